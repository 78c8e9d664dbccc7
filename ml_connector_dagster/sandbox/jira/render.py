"""The JSON shapes of the REST v3 API (``components/schemas`` of the published spec)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .records import (
    AdminWebhook,
    Comment,
    DynamicWebhook,
    Issue,
)
from .site import (
    CATEGORIES,
    DEMO_USER,
    PRIORITIES,
    READ_ONLY_FIELDS,
    RESOLUTIONS,
    SYSTEM_FIELDS,
    IssueType,
    Project,
    Status,
    User,
    epoch_ms,
    jira_time,
)


def field_selection(spec: Sequence[str], *, default_all: bool) -> Callable[[str], bool]:
    """The ``fields`` parameter: ids, ``*all``/``*navigable``, and ``-id`` exclusions."""
    includes = {s for s in spec if not s.startswith(("-", "*"))}
    excludes = {s[1:] for s in spec if s.startswith("-")}
    everything = (default_all and not spec) or any(s in {"*all", "*navigable"} for s in spec) or (excludes and not includes)
    return lambda fid: (everything or fid in includes) and fid not in excludes


class Rendering:
    """Mixed into the simulator: records as the API returns them."""

    @staticmethod
    def _avatars(kind: str, ident: str) -> dict[str, str]:
        return {f"{n}x{n}": f"https://avatar-management.sandbox.atl-paas.net/{kind}/{ident}?size={n}" for n in (16, 24, 32, 48)}

    def _user_json(self, user: User, base: str, *, email: bool = False) -> dict[str, Any]:
        body = {
            "self": f"{base}/rest/api/3/user?accountId={user.account_id}",
            "accountId": user.account_id,
            "accountType": "atlassian",
            "avatarUrls": self._avatars("user", user.account_id),
            "displayName": user.display_name,
            "active": True,
            "timeZone": user.time_zone,
        }
        if email:
            body["emailAddress"] = user.email
        return body

    def _status_json(self, status: Status, base: str) -> dict[str, Any]:
        cat_id, cat_name, color = CATEGORIES[status.category]
        return {
            "self": f"{base}/rest/api/3/status/{status.id}",
            "description": status.description,
            "iconUrl": f"{base}/images/icons/statuses/generic.png",
            "name": status.name,
            "untranslatedName": status.name,
            "id": status.id,
            "statusCategory": {
                "self": f"{base}/rest/api/3/statuscategory/{cat_id}",
                "id": cat_id,
                "key": status.category,
                "colorName": color,
                "name": cat_name,
            },
        }

    def _issuetype_json(self, issuetype: IssueType, base: str) -> dict[str, Any]:
        return {
            "self": f"{base}/rest/api/3/issuetype/{issuetype.id}",
            "id": issuetype.id,
            "description": issuetype.description,
            "iconUrl": f"{base}/rest/api/2/universal_avatar/view/type/issuetype/avatar/{issuetype.id}?size=medium",
            "name": issuetype.name,
            "subtask": issuetype.subtask,
            "avatarId": int(issuetype.id),
            "hierarchyLevel": -1 if issuetype.subtask else 0,
        }

    def _project_json(self, project: Project, base: str, *, expanded: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "expand": "description,lead,issueTypes,url,projectKeys,permissions,insight",
            "self": f"{base}/rest/api/3/project/{project.id}",
            "id": project.id,
            "key": project.key,
            "name": project.name,
            "avatarUrls": self._avatars("project", project.id),
            "projectTypeKey": project.type_key,
            "simplified": False,
            "style": "classic",
            "isPrivate": False,
            "properties": {},
        }
        if expanded:
            body["description"] = ""
            body["lead"] = self._user_json(self.users[project.lead], base)
            body["issueTypes"] = [self._issuetype_json(self.issue_types[t], base) for t in project.issue_types]
            body["assigneeType"] = "UNASSIGNED"
        return body

    def _resolution_json(self, resolution_id: str, base: str) -> dict[str, Any]:
        return {
            "self": f"{base}/rest/api/3/resolution/{resolution_id}",
            "id": resolution_id,
            "description": "",
            "name": RESOLUTIONS[resolution_id],
        }

    def _priority_json(self, priority_id: str, base: str) -> dict[str, Any]:
        name = PRIORITIES[priority_id]
        return {
            "self": f"{base}/rest/api/3/priority/{priority_id}",
            "iconUrl": f"{base}/images/icons/priorities/{name.lower()}.svg",
            "name": name,
            "id": priority_id,
        }

    def _field_schema(self, field_id: str) -> dict[str, Any]:
        custom = self.custom_fields.get(field_id)
        if custom is not None:
            type_ = "number" if custom.kind == "float" else "string"
            return {
                "type": type_,
                "custom": f"com.atlassian.jira.plugin.system.customfieldtypes:{custom.kind}",
                "customId": custom.number,
            }
        return dict(SYSTEM_FIELDS[field_id][1])

    def _fields_json(self) -> list[dict[str, Any]]:
        fields = []
        for fid, (name, schema, clauses) in SYSTEM_FIELDS.items():
            fields.append({
                "id": fid, "key": fid, "name": name, "custom": False, "orderable": fid not in READ_ONLY_FIELDS,
                "navigable": True, "searchable": bool(clauses), "clauseNames": list(clauses), "schema": dict(schema),
            })
        for custom in self.custom_fields.values():
            label = {"textfield": "Short text", "textarea": "Paragraph", "float": "Number"}[custom.kind]
            fields.append({
                "id": custom.id, "key": custom.id, "name": custom.name,
                "custom": True, "orderable": True, "navigable": True, "searchable": True,
                "clauseNames": [f"cf[{custom.number}]", custom.name, f"{custom.name}[{label}]"],
                "schema": self._field_schema(custom.id),
            })
        return fields

    def _comment_json(self, comment: Comment, base: str, tz: str) -> dict[str, Any]:
        author = self._user_json(self.users[comment.author], base)
        return {
            "self": f"{base}/rest/api/3/issue/{comment.issue_id}/comment/{comment.id}",
            "id": str(comment.id),
            "author": author,
            "body": comment.body,
            "updateAuthor": author,
            "created": jira_time(comment.created, tz),
            "updated": jira_time(comment.updated, tz),
            "jsdPublic": True,
        }

    def _issue_fields(self, issue: Issue, base: str, tz: str) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "statuscategorychangedate": jira_time(issue.status_changed, tz),
            "issuetype": self._issuetype_json(issue.issuetype, base),
            "parent": None,
            "project": self._project_json(issue.project, base),
            "resolution": self._resolution_json(issue.resolution_id, base) if issue.resolution_id else None,
            "resolutiondate": jira_time(issue.resolutiondate, tz) if issue.resolutiondate else None,
            "created": jira_time(issue.created, tz),
            "updated": jira_time(issue.updated, tz),
            "priority": self._priority_json(issue.priority_id, base),
            "labels": list(issue.labels),
            "assignee": self._user_json(self.users[issue.assignee], base) if issue.assignee else None,
            "reporter": self._user_json(self.users[issue.reporter], base),
            "creator": self._user_json(self.users[issue.creator], base),
            "status": self._status_json(self.statuses[issue.status_id], base),
            "summary": issue.summary,
            "description": issue.description,
            "duedate": issue.duedate,
            "comment": {
                "comments": [self._comment_json(c, base, tz) for c in issue.comments],
                "self": f"{base}/rest/api/3/issue/{issue.id}/comment",
                "maxResults": len(issue.comments),
                "total": len(issue.comments),
                "startAt": 0,
            },
        }
        if issue.parent_id is not None:
            parent = self.issues[issue.parent_id]
            fields["parent"] = {
                "id": str(parent.id), "key": parent.key, "self": f"{base}/rest/api/3/issue/{parent.id}",
                "fields": {"summary": parent.summary, "status": self._status_json(self.statuses[parent.status_id], base),
                           "issuetype": self._issuetype_json(parent.issuetype, base)},
            }
        else:
            del fields["parent"]
        for fid in issue.project.custom_fields:
            fields[fid] = issue.custom.get(fid)
        return fields

    def _issue_json(self, issue: Issue, base: str, tz: str, selection: Callable[[str], bool] | None = None,
                    expand: Sequence[str] = ()) -> dict[str, Any]:
        fields = self._issue_fields(issue, base, tz)
        if selection is not None:
            fields = {k: v for k, v in fields.items() if selection(k)}
        body: dict[str, Any] = {
            "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
            "id": str(issue.id),
            "self": f"{base}/rest/api/3/issue/{issue.id}",
            "key": issue.key,
            "fields": fields,
        }
        if "names" in expand:
            body["names"] = {fid: self._field_name(fid) for fid in fields}
        if "schema" in expand:
            body["schema"] = {fid: self._field_schema(fid) for fid in fields if fid in SYSTEM_FIELDS or fid in self.custom_fields}
        if "changelog" in expand:
            histories = [
                {**h, "author": self._user_json(self.users[h["author"]], base), "created": jira_time(h["created"], tz)}
                for h in reversed(issue.changelog)
            ]
            body["changelog"] = {"startAt": 0, "maxResults": len(histories), "total": len(histories), "histories": histories}
        return body

    def _field_name(self, field_id: str) -> str:
        if field_id in self.custom_fields:
            return self.custom_fields[field_id].name
        return SYSTEM_FIELDS.get(field_id, (field_id,))[0]

    def _webhook_json(self, webhook: DynamicWebhook) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": webhook.id,
            "jqlFilter": webhook.jql,
            "events": list(webhook.events),
            "expirationDate": epoch_ms(webhook.expires_at),
            "url": webhook.url,
        }
        if webhook.field_ids is not None:
            body["fieldIdsFilter"] = list(webhook.field_ids)
        return body

    def _admin_webhook_json(self, webhook: AdminWebhook, base: str) -> dict[str, Any]:
        return {
            "name": webhook.name,
            "url": webhook.url,
            "excludeBody": False,
            "filters": {"issue-related-events-section": webhook.jql},
            "events": list(webhook.events),
            "enabled": True,
            "self": f"{base}/rest/webhooks/1.0/webhook/{webhook.id}",
            "lastUpdatedUser": DEMO_USER.account_id,
            "lastUpdatedDisplayName": DEMO_USER.display_name,
            "lastUpdated": epoch_ms(webhook.created),
        }
