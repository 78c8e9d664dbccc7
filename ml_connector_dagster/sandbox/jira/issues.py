"""Issues, their fields (validated as Jira validates them), comments and workflow transitions."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from starlette.responses import JSONResponse, Response

from ml_connector_dagster.systems.jira import adf

from .records import (
    Call,
    Caller,
    Comment,
    FieldErrors,
    Issue,
    error_body,
    jira_error,
)
from .render import (
    field_selection,
)
from .site import (
    ADF_ERROR,
    BULK_LIMIT,
    OFF_SCREEN,
    PRIORITIES,
    RESOLUTIONS,
    IssueType,
    Project,
    Transition,
    User,
    jira_time,
)


class IssueEndpoints:
    """Mixed into the simulator: issue, comment and transition endpoints."""

    def _resolve_user(self, value: Any) -> str | None:
        if isinstance(value, dict):
            account_id = value.get("accountId") or value.get("id")
            if isinstance(account_id, str) and account_id in self.users:
                return account_id
        raise ValueError("Specified user does not exist or you do not have required permissions")

    def _field_values(
        self, project: Project, issuetype: IssueType, fields: Mapping[str, Any], issue: Issue | None
    ) -> dict[str, Any]:
        """Validated values for the settable ``fields`` of an issue (raises :class:`FieldErrors`)."""
        errors: dict[str, str] = {}
        values: dict[str, Any] = {}
        settable = {"summary", "description", "assignee", "reporter", "priority", "labels", "duedate",
                    *project.custom_fields, *({"parent"} if issuetype.subtask else set())}
        for fid, value in fields.items():
            if fid in {"project", "issuetype"}:
                continue
            if fid not in settable:
                errors[fid] = OFF_SCREEN.format(fid)
                continue
            try:
                values[fid] = self._field_value(fid, value)
            except ValueError as exc:
                errors[fid] = str(exc)
        if issue is None:
            summary = fields.get("summary")
            if not isinstance(summary, str) or not summary.strip():
                errors.setdefault("summary", "You must specify a summary of the issue.")
            if issuetype.subtask and "parent" not in fields:
                errors["parent"] = "Issue type is a sub-task but parent issue key or id not specified."
        if errors:
            raise FieldErrors(errors)
        return values

    def _field_value(self, fid: str, value: Any) -> Any:
        custom = self.custom_fields.get(fid)
        if fid == "description" or (custom is not None and custom.kind == "textarea"):
            if value is None:
                return None
            try:
                adf.validate(value)
            except adf.InvalidAdf:
                raise ValueError(ADF_ERROR) from None
            return value
        if fid == "summary":
            if not isinstance(value, str):
                raise ValueError("Operation value must be a string")
            if not value.strip():
                raise ValueError("You must specify a summary of the issue.")
            if len(value) > 255:
                raise ValueError("Summary must be less than 255 characters.")
            if "\n" in value or "\r" in value:
                raise ValueError("The summary is invalid because it contains newline characters.")
            return value
        if custom is not None and custom.kind == "textfield":
            if value is None:
                return None
            if not isinstance(value, str):
                raise ValueError("Operation value must be a string")
            if len(value) > 255:
                raise ValueError("The entered text is too long. It exceeds the allowed limit of 255 characters.")
            return value
        if custom is not None and custom.kind == "float":
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError("Operation value must be a number")
            return value
        if fid == "duedate":
            if value is None:
                return None
            try:
                if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                    raise ValueError
                date.fromisoformat(value)
            except ValueError:
                raise ValueError(f"Error parsing date string: {value}") from None
            return value
        if fid == "labels":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError("Operation value must be an array of strings")
            bad = next((v for v in value if not v or re.search(r"\s", v) or len(v) > 255), None)
            if bad is not None:
                raise ValueError(f"The label '{bad}' contains spaces which is invalid.")
            return list(dict.fromkeys(value))
        if fid == "assignee":
            return None if value is None else self._resolve_user(value)
        if fid == "reporter":
            if value is None:
                raise ValueError("Reporter is required.")
            return self._resolve_user(value)
        if fid == "priority":
            ref = value if isinstance(value, dict) else {}
            for pid, name in PRIORITIES.items():
                if str(ref.get("id")) == pid or ref.get("name") == name:
                    return pid
            raise ValueError("Specify the Priority (id or name) in the proper format")
        if fid == "parent":
            ref = value if isinstance(value, dict) else {}
            parent = self._find_issue(str(ref.get("key") or ref.get("id") or ""))
            if parent is None:
                raise ValueError("Could not find issue by id or key.")
            return parent.id
        raise ValueError(OFF_SCREEN.format(fid))

    def _merge_update(self, spec: Mapping[str, Any], current_labels: Sequence[str]) -> dict[str, Any]:
        """``fields`` plus the ``set``/``add``/``remove`` operations of ``update`` (not comments)."""
        fields = dict(spec.get("fields") or {})
        update = spec.get("update") or {}
        errors: dict[str, str] = {}
        if not isinstance(fields, dict) or not isinstance(update, dict):
            raise FieldErrors({}, ["Invalid request payload. Refer to the REST API documentation and try again."])
        for fid, operations in update.items():
            if fid == "comment":
                continue
            if fid in fields:
                errors[fid] = f"Field '{fid}' cannot be set in both fields and update."
                continue
            if not isinstance(operations, list):
                errors[fid] = "Invalid update operations."
                continue
            labels = list(fields.get("labels", current_labels)) if fid == "labels" else None
            for operation in operations:
                (verb, argument), = operation.items() if isinstance(operation, dict) and len(operation) == 1 else ((None, None),)
                if verb == "set":
                    fields[fid] = argument
                elif fid == "labels" and verb in {"add", "remove"} and labels is not None:
                    if verb == "add" and argument not in labels:
                        labels.append(argument)
                    elif verb == "remove" and argument in labels:
                        labels.remove(argument)
                    fields["labels"] = labels
                else:
                    errors[fid] = f"Field '{fid}' does not support update operation '{verb}'."
        if errors:
            raise FieldErrors(errors)
        return fields

    def _comment_updates(self, spec: Mapping[str, Any]) -> list[dict[str, Any]]:
        bodies = []
        for operation in (spec.get("update") or {}).get("comment") or []:
            body = (operation.get("add") or {}).get("body") if isinstance(operation, dict) else None
            try:
                adf.validate(body)
            except adf.InvalidAdf:
                raise FieldErrors({"comment": "Comment body is not valid!"}) from None
            bodies.append(body)
        return bodies

    def _create(self, spec: Any, caller: Caller) -> tuple[Issue, dict[str, Any] | None]:
        """Create one issue from an ``IssueUpdateDetails``; raises :class:`FieldErrors`."""
        if not isinstance(spec, dict):
            raise FieldErrors({}, ["Invalid request payload. Refer to the REST API documentation and try again."])
        fields = self._merge_update(spec, [])
        project_ref = fields.get("project")
        project = None
        if isinstance(project_ref, dict):
            project = self._find_project(project_ref.get("key") or project_ref.get("id") or "")
        if project is None:
            raise FieldErrors({"project": "Specify a valid project ID or key"})
        type_ref = fields.get("issuetype")
        if not isinstance(type_ref, dict) or not (type_ref.get("id") or type_ref.get("name")):
            raise FieldErrors({"issuetype": "Specify an issue type"})
        issuetype = next(
            (self.issue_types[t] for t in project.issue_types
             if str(type_ref.get("id")) == t or type_ref.get("name") == self.issue_types[t].name),
            None,
        )
        if issuetype is None:
            raise FieldErrors({"issuetype": "The issue type selected is invalid."})
        values = self._field_values(project, issuetype, fields, None)
        comments = self._comment_updates(spec)
        transition = spec.get("transition")
        now = self.clock.time()
        issue = self._new_issue(project, issuetype, values.pop("summary"), caller.user.account_id, now)
        issue.reporter = values.pop("reporter", caller.user.account_id)
        self._set_values(issue, values, changelog=False)  # a new issue's changelog starts empty, as in Jira
        issue.versions = []
        self._reindex_later(issue)
        self._emit("jira:issue_created", issue, caller.user, type_name="issue_created")
        for body in comments:
            self._add_comment(issue, body, caller.user)
        outcome = None
        if isinstance(transition, dict):
            chosen = self._available(issue, str(transition.get("id", "")))
            if chosen is None:
                outcome = {"status": 400, "errorCollection": error_body(
                    [f"Transition id '{transition.get('id')}' is not valid for this issue."])}
            else:
                self._apply_transition(issue, chosen, caller.user, None)
                outcome = {"status": 204}
        return issue, outcome

    def _set_values(self, issue: Issue, values: Mapping[str, Any], *, changelog: bool = True) -> list[dict[str, Any]]:
        """Apply validated values; the changelog items of what really changed (none without ``changelog``)."""
        items = []
        for fid, value in values.items():
            old = self._raw_value(issue, fid)
            if old == value:
                continue
            if changelog:
                items.append(self._change_item(fid, old, value))
            if fid in self.custom_fields:
                issue.custom[fid] = value
            elif fid == "parent":
                issue.parent_id = value
            elif fid == "priority":
                issue.priority_id = value
            else:
                setattr(issue, fid, value)
        return items

    def _raw_value(self, issue: Issue, fid: str) -> Any:
        if fid in self.custom_fields:
            return issue.custom.get(fid)
        return {"parent": issue.parent_id, "priority": issue.priority_id}.get(fid, getattr(issue, fid, None))

    def _change_item(self, fid: str, old: Any, new: Any) -> dict[str, Any]:
        def as_string(value: Any) -> str | None:
            if value is None:
                return None
            if fid in {"assignee", "reporter"}:
                return self.users[value].display_name
            if fid == "priority":
                return PRIORITIES[value]
            if fid == "labels":
                return " ".join(value)
            if isinstance(value, dict):
                return adf.plain_text(value)
            return str(value)

        ids = {"assignee", "reporter", "priority", "parent"}
        return {
            "field": self._field_name(fid) if fid in self.custom_fields else fid,
            "fieldtype": "custom" if fid in self.custom_fields else "jira",
            "fieldId": fid,
            "from": str(old) if fid in ids and old is not None else None,
            "fromString": as_string(old),
            "to": str(new) if fid in ids and new is not None else None,
            "toString": as_string(new),
        }

    def _record_change(self, issue: Issue, actor: User, items: list[dict[str, Any]]) -> dict[str, Any]:
        # ChangeDetails types from/to as strings: an empty side is left out rather than null.
        items = [{k: v for k, v in item.items() if v is not None} for item in items]
        now = self.clock.time()
        entry = {"id": str(next(self._changelog_ids)), "author": actor.account_id, "created": now, "items": items}
        issue.changelog.append(entry)
        issue.updated = now
        self._reindex_later(issue)
        return {"id": entry["id"], "items": items}

    def _issue_create(self, call: Call) -> Response:
        try:
            issue, transition = self._create(call.body, call.caller)
        except FieldErrors as exc:
            return jira_error(400, *exc.messages, errors=exc.errors)
        body = self._created_json(issue, call.caller.api_base)
        if transition is not None:
            body["transition"] = transition
        return JSONResponse(body, status_code=201)

    @staticmethod
    def _created_json(issue: Issue, base: str) -> dict[str, Any]:
        return {"id": str(issue.id), "key": issue.key, "self": f"{base}/rest/api/3/issue/{issue.id}"}

    def _issue_bulk(self, call: Call) -> Response:
        updates = call.body.get("issueUpdates") if isinstance(call.body, dict) else None
        if not isinstance(updates, list):
            return jira_error(400, "Invalid request payload. Refer to the REST API documentation and try again.")
        if len(updates) > BULK_LIMIT:
            return jira_error(400, f"You can create at most {BULK_LIMIT} issues in one bulk request; got {len(updates)}.")
        created, failed = [], []
        for number, spec in enumerate(updates):
            try:
                issue, transition = self._create(spec, call.caller)
            except FieldErrors as exc:
                failed.append({
                    "status": 400,
                    "elementErrors": error_body(exc.messages, exc.errors),
                    "failedElementNumber": number,
                })
                continue
            answer = self._created_json(issue, call.caller.api_base)
            if transition is not None:  # CreatedIssue.transition: how the requested transition went
                answer["transition"] = transition
            created.append(answer)
        return JSONResponse({"issues": created, "errors": failed}, status_code=201 if created else 400)

    def _issue_or_404(self, call: Call) -> Issue | Response:
        issue = self._find_issue(call.params["key"])
        if issue is None:
            return jira_error(404, "Issue does not exist or you do not have permission to see it.")
        return issue

    def _issue_get(self, call: Call) -> Response:
        issue = self._issue_or_404(call)
        if isinstance(issue, Response):
            return issue
        selection = field_selection(call.args("fields"), default_all=True)
        expand = call.args("expand")
        return JSONResponse(self._issue_json(issue, call.caller.api_base, call.caller.user.time_zone, selection, expand))

    def _issue_edit(self, call: Call) -> Response:
        issue = self._issue_or_404(call)
        if isinstance(issue, Response):
            return issue
        if not isinstance(call.body, dict):
            return jira_error(400, "Invalid request payload. Refer to the REST API documentation and try again.")
        try:
            fields = self._merge_update(call.body, issue.labels)
            errors = {}
            for fid, ref in (("project", fields.get("project")), ("issuetype", fields.get("issuetype"))):
                current = {"project": (issue.project.id, issue.project.key), "issuetype": (issue.issuetype.id, issue.issuetype.name)}[fid]
                if ref is not None and not (isinstance(ref, dict) and ({str(v) for v in ref.values()} & set(current))):
                    errors[fid] = OFF_SCREEN.format(fid)
            if errors:
                raise FieldErrors(errors)
            values = self._field_values(issue.project, issue.issuetype, fields, issue)
            comments = self._comment_updates(call.body)
        except FieldErrors as exc:
            return jira_error(400, *exc.messages, errors=exc.errors)
        items = self._set_values(issue, values)
        if items:
            changelog = self._record_change(issue, call.caller.user, items)
            only_assignee = all(i["fieldId"] == "assignee" for i in items)
            self._emit("jira:issue_updated", issue, call.caller.user, changelog=changelog,
                       type_name="issue_assigned" if only_assignee else "issue_updated")
        for body in comments:
            self._add_comment(issue, body, call.caller.user)
        if (call.arg("returnIssue") or "").lower() == "true":
            return JSONResponse(self._issue_json(issue, call.caller.api_base, call.caller.user.time_zone))
        return Response(status_code=204)

    def _issue_delete(self, call: Call) -> Response:
        issue = self._issue_or_404(call)
        if isinstance(issue, Response):
            return issue
        subtasks = [i for i in self.issues.values() if i.parent_id == issue.id]
        if subtasks and (call.arg("deleteSubtasks") or "").lower() != "true":
            return jira_error(400, f"The issue '{issue.key}' has subtasks. To delete it, set deleteSubtasks to true.")
        for doomed in [*subtasks, issue]:
            self._emit("jira:issue_deleted", doomed, call.caller.user, type_name="issue_deleted")
            del self.issues[doomed.id]
            del self.keys[doomed.key]
        return Response(status_code=204)

    def _add_comment(self, issue: Issue, body: dict[str, Any], author: User) -> Comment:
        now = self.clock.time()
        comment = Comment(next(self._comment_ids), issue.id, author.account_id, body, now, now)
        issue.comments.append(comment)
        issue.updated = now
        self._reindex_later(issue)
        self._emit("comment_created", issue, author, comment=comment)
        self._emit("jira:issue_updated", issue, author, comment=comment, type_name="issue_commented")
        return comment

    def _comment_list(self, call: Call) -> Response:
        issue = self._issue_or_404(call)
        if isinstance(issue, Response):
            return issue
        order = call.arg("orderBy", "created")
        if order not in {"created", "+created", "-created"}:
            return jira_error(400, "orderBy must be 'created', '+created' or '-created'.")
        start, size = self._paging(call, default=100, cap=5000)
        comments = sorted(issue.comments, key=lambda c: (c.created, c.id), reverse=order == "-created")
        tz = call.caller.user.time_zone
        return JSONResponse({
            "startAt": start,
            "maxResults": size,
            "total": len(comments),
            "comments": [self._comment_json(c, call.caller.api_base, tz) for c in comments[start : start + size]],
        })

    def _comment_create(self, call: Call) -> Response:
        issue = self._issue_or_404(call)
        if isinstance(issue, Response):
            return issue
        body = call.body.get("body") if isinstance(call.body, dict) else None
        if body is None:
            return jira_error(400, errors={"comment": "Comment body can not be empty!"})
        try:
            adf.validate(body)
        except adf.InvalidAdf:
            return jira_error(400, errors={"comment": "Comment body is not valid!"})
        comment = self._add_comment(issue, body, call.caller.user)
        return JSONResponse(self._comment_json(comment, call.caller.api_base, call.caller.user.time_zone), status_code=201)

    def _available(self, issue: Issue, transition_id: str | None = None) -> Transition | None:
        for transition in self._available_all(issue):
            if transition.id == transition_id:
                return transition
        return None

    def _available_all(self, issue: Issue) -> list[Transition]:
        return [
            t for t in issue.project.workflow.transitions
            if (t.sources is None or issue.status_id in t.sources) and t.to != issue.status_id
        ]

    def _transition_json(self, transition: Transition, base: str, with_fields: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": transition.id,
            "name": transition.name,
            "to": self._status_json(self.statuses[transition.to], base),
            "hasScreen": transition.resolves,
            "isGlobal": transition.sources is None,
            "isInitial": False,
            "isAvailable": True,
            "isConditional": False,
            "isLooped": False,
        }
        if with_fields:
            body["fields"] = {}
            if transition.resolves:
                body["fields"]["resolution"] = {
                    "required": True, "schema": {"type": "resolution", "system": "resolution"}, "name": "Resolution",
                    "key": "resolution", "operations": ["set"], "hasDefaultValue": True,
                    "allowedValues": [self._resolution_json(r, base) for r in RESOLUTIONS],
                }
        return body

    def _transition_list(self, call: Call) -> Response:
        issue = self._issue_or_404(call)
        if isinstance(issue, Response):
            return issue
        wanted = call.arg("transitionId")
        with_fields = "transitions.fields" in call.args("expand")
        transitions = [
            self._transition_json(t, call.caller.api_base, with_fields)
            for t in self._available_all(issue) if wanted is None or t.id == wanted
        ]
        return JSONResponse({"expand": "transitions", "transitions": transitions})

    def _transition_do(self, call: Call) -> Response:
        issue = self._issue_or_404(call)
        if isinstance(issue, Response):
            return issue
        spec = call.body if isinstance(call.body, dict) else {}
        ref = spec.get("transition")
        if not isinstance(ref, dict) or not ref.get("id"):
            return jira_error(400, "Missing 'transition' identifier")
        transition = self._available(issue, str(ref["id"]))
        if transition is None:
            return jira_error(400, f"Transition id '{ref['id']}' is not valid for this issue.")
        fields = spec.get("fields") or {}
        resolution_id = None
        errors = {}
        for fid, value in fields.items():
            if fid != "resolution" or not transition.resolves:
                errors[fid] = OFF_SCREEN.format(fid)
                continue
            ref_res = value if isinstance(value, dict) else {}
            resolution_id = next(
                (rid for rid, name in RESOLUTIONS.items() if str(ref_res.get("id")) == rid or ref_res.get("name") == name),
                None,
            )
            if resolution_id is None:
                errors[fid] = "Could not find resolution by id or name."
        try:
            comments = self._comment_updates(spec)
        except FieldErrors as exc:
            errors.update(exc.errors)
        if errors:
            return jira_error(400, errors=errors)
        self._apply_transition(issue, transition, call.caller.user, resolution_id)
        for body in comments:
            self._add_comment(issue, body, call.caller.user)
        return Response(status_code=204)

    def _apply_transition(self, issue: Issue, transition: Transition, actor: User, resolution_id: str | None) -> None:
        old_status = self.statuses[issue.status_id]
        new_status = self.statuses[transition.to]
        now = self.clock.time()
        items = [{
            "field": "status", "fieldtype": "jira", "fieldId": "status",
            "from": old_status.id, "fromString": old_status.name, "to": new_status.id, "toString": new_status.name,
        }]
        old_resolution = issue.resolution_id
        if transition.resolves:
            issue.resolution_id = resolution_id or "10000"
            issue.resolutiondate = now
        elif transition.reopens:
            issue.resolution_id, issue.resolutiondate = None, None
        if issue.resolution_id != old_resolution:
            items.append({
                "field": "resolution", "fieldtype": "jira", "fieldId": "resolution",
                "from": old_resolution, "fromString": RESOLUTIONS.get(old_resolution or ""),
                "to": issue.resolution_id, "toString": RESOLUTIONS.get(issue.resolution_id or ""),
            })
        issue.status_id = new_status.id
        if old_status.category != new_status.category:
            issue.status_changed = now
        changelog = self._record_change(issue, actor, items)
        self.transition_log.append({
            "issueKey": issue.key, "transitionId": transition.id, "from": old_status.name, "to": new_status.name,
            "resolution": RESOLUTIONS.get(issue.resolution_id or ""), "by": actor.account_id, "at": jira_time(now),
        })
        self._emit("jira:issue_updated", issue, actor, changelog=changelog,
                   type_name="issue_resolved" if transition.resolves else "issue_generic")
