"""Records as Asana answers them: compact in lists, full on single reads, shaped by ``opt_fields``.

``opt_fields`` (comma separated, dotted for nested objects) replaces the default representation:
the answer holds ``gid`` plus exactly the fields asked for; ``assignee.name`` gives
``{"assignee": {"gid": ..., "name": ...}}``, a bare object field its compact form. Opt-in fields
(``html_notes``, ``num_subtasks``, ``created_by``...) appear only when asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .tenant import CustomField, EnumOption, Job, Project, ProjectTemplate, Task, Tenant, User, Webhook, iso

APP_URL = "https://app.asana.com"
ERRORS_HELP = ("For more information on API status codes and how to handle them, read the docs on errors: "
               "https://developers.asana.com/docs/errors")
# Fields the spec lists as opt_fields but which are about paging, not the record.
PAGING_FIELDS = frozenset({"offset", "path", "uri"})


def error_body(*messages: str, phrase: str | None = None) -> dict[str, Any]:
    """Asana's error envelope; 500s carry an error phrase for support."""
    errors = [{"message": m, "help": ERRORS_HELP} for m in messages]
    if phrase is not None:
        for error in errors:
            error["phrase"] = phrase
    return {"errors": errors}


def compact(kind: str, gid: str, name: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"gid": gid, "resource_type": kind}
    if name is not None:
        body["name"] = name
    body.update(extra)
    return body


def option_json(option: EnumOption) -> dict[str, Any]:
    return {"gid": option.gid, "resource_type": "enum_option", "name": option.name, "enabled": option.enabled,
            "color": option.color}


def custom_field_json(custom_field: CustomField, tenant: Tenant) -> dict[str, Any]:
    """A custom field definition (``GET /custom_fields/{gid}``)."""
    body: dict[str, Any] = {
        "gid": custom_field.gid, "resource_type": "custom_field", "name": custom_field.name,
        "resource_subtype": custom_field.subtype, "type": custom_field.subtype,
        "representation_type": custom_field.subtype, "description": custom_field.description,
        "is_global_to_workspace": True, "has_notifications_enabled": True, "asana_created_field": None,
        "is_formula_field": False, "is_value_read_only": False, "id_prefix": None,
        "privacy_setting": "public_with_guests", "default_access_level": "editor",
        "created_by": _user_compact(tenant, custom_field.created_by),
    }
    if custom_field.subtype == "enum":
        body["enum_options"] = [option_json(o) for o in custom_field.options]
    if custom_field.subtype == "number":
        body.update(precision=custom_field.precision, format="none", currency_code=None, custom_label=None,
                    custom_label_position=None)
    return body


def custom_value_json(custom_field: CustomField, value: Any, tenant: Tenant) -> dict[str, Any]:
    """A custom field as it appears on a task: the definition plus the task's value."""
    body: dict[str, Any] = {
        "gid": custom_field.gid, "resource_type": "custom_field", "name": custom_field.name,
        "resource_subtype": custom_field.subtype, "type": custom_field.subtype,
        "representation_type": custom_field.subtype, "enabled": True, "is_formula_field": False,
        "id_prefix": None, "created_by": _user_compact(tenant, custom_field.created_by),
    }
    display: str | None = None
    if custom_field.subtype == "text":
        body["text_value"] = value
        display = value
    elif custom_field.subtype == "number":
        body["number_value"] = value
        body["precision"] = custom_field.precision
        display = None if value is None else f"{value:.{custom_field.precision}f}"
    elif custom_field.subtype == "date":
        body["date_value"] = None if value is None else {"date": value, "date_time": None}
        display = value
    elif custom_field.subtype == "enum":
        found = tenant.option(value) if value is not None else None
        option = found[1] if found else None
        body["enum_options"] = [option_json(o) for o in custom_field.options]
        body["enum_value"] = option_json(option) if option else None
        display = option.name if option else None
    body["display_value"] = display
    return body


def _user_compact(tenant: Tenant, gid: str | None) -> dict[str, Any] | None:
    if gid is None or gid not in tenant.users:
        return None
    return compact("user", gid, tenant.users[gid].name)


def user_json(user: User, tenant: Tenant) -> dict[str, Any]:
    return {
        "gid": user.gid, "resource_type": "user", "name": user.name, "email": user.email, "photo": None,
        "workspaces": [compact("workspace", tenant.workspace_gid, tenant.workspace_name)],
    }


def workspace_json(tenant: Tenant) -> dict[str, Any]:
    return {"gid": tenant.workspace_gid, "resource_type": "workspace", "name": tenant.workspace_name,
            "email_domains": ["fjordlys.no"], "is_organization": True}


def project_json(project: Project, tenant: Tenant) -> dict[str, Any]:
    return {
        "gid": project.gid, "resource_type": "project", "name": project.name, "archived": project.archived,
        "color": project.color, "created_at": iso(project.created_at), "modified_at": iso(project.modified_at),
        "current_status": None, "current_status_update": None,
        "custom_field_settings": [custom_field_setting_json(project, tenant.fields[g], tenant) for g in project.field_gids],
        "default_view": "list", "due_date": project.due_on, "due_on": project.due_on, "start_on": project.start_on,
        "notes": project.notes, "html_notes": f"<body>{project.notes}</body>", "public": True,
        "privacy_setting": "public_to_workspace", "default_access_level": "editor",
        "members": [compact("user", g, u.name) for g, u in tenant.users.items()],
        "followers": [compact("user", project.owner, tenant.users[project.owner].name)],
        "owner": _user_compact(tenant, project.owner),
        "team": compact("team", tenant.team_gid, tenant.team_name),
        "workspace": compact("workspace", tenant.workspace_gid, tenant.workspace_name),
        "permalink_url": f"{APP_URL}/1/{tenant.workspace_gid}/project/{project.gid}",
        "created_from_template": (compact("project_template", project.template_gid, tenant.templates[project.template_gid].name)
                                  if project.template_gid in tenant.templates else None),
        "icon": "list",
    }


def custom_field_setting_json(project: Project, custom_field: CustomField, tenant: Tenant) -> dict[str, Any]:
    return {
        "gid": f"{project.gid}{custom_field.gid[-6:]}", "resource_type": "custom_field_setting", "is_important": True,
        "project": compact("project", project.gid, project.name), "parent": compact("project", project.gid, project.name),
        "custom_field": custom_field_json(custom_field, tenant),
    }


def template_json(template: ProjectTemplate, tenant: Tenant) -> dict[str, Any]:
    return {
        "gid": template.gid, "resource_type": "project_template", "name": template.name,
        "description": template.description, "html_description": f"<body>{template.description}</body>",
        "public": True, "color": template.color, "owner": _user_compact(tenant, template.owner),
        "team": compact("team", tenant.team_gid, tenant.team_name),
        "requested_dates": [{"gid": gid, "name": name, "description": text} for gid, name, text in template.requested_dates],
        "requested_roles": [],
    }


def job_json(job: Job, tenant: Tenant) -> dict[str, Any]:
    project = tenant.projects.get(job.new_project or "")
    return {
        "gid": job.gid, "resource_type": "job", "resource_subtype": job.subtype, "status": job.status,
        "new_project": compact("project", project.gid, project.name) if project else None,
        "new_task": None, "new_project_template": None, "new_portfolio": None,
    }


def task_json(task: Task, tenant: Tenant) -> dict[str, Any]:
    """Every field of a task; :data:`TASK_OPT_IN` ones are dropped from the default representation."""
    projects = [tenant.projects[g] for g in task.project_gids if g in tenant.projects]
    fields = [g for p in projects for g in p.field_gids]
    fields += [g for g in task.custom if g not in fields]
    parent = tenant.tasks.get(task.parent or "")
    return {
        "gid": task.gid, "resource_type": "task", "name": task.name, "resource_subtype": task.resource_subtype,
        "approval_status": None if task.resource_subtype != "approval" else "pending",
        "assignee": _user_compact(tenant, task.assignee), "assignee_status": "inbox",
        "completed": task.completed, "completed_at": iso(task.completed_at) if task.completed_at else None,
        "completed_by": None, "created_at": iso(task.created_at), "created_by": compact("user", task.created_by),
        "custom_fields": [custom_value_json(tenant.fields[g], task.custom.get(g), tenant) for g in dict.fromkeys(fields)
                          if g in tenant.fields],
        "dependencies": [], "dependents": [], "due_at": task.due_at, "due_on": task.due_on,
        "followers": [compact("user", g, tenant.users[g].name) for g in task.follower_gids if g in tenant.users],
        "hearted": False, "hearts": [], "liked": False, "likes": [], "num_hearts": 0, "num_likes": 0,
        "html_notes": f"<body>{task.notes}</body>", "is_rendered_as_separator": False,
        "memberships": [{"project": compact("project", p.gid, p.name),
                         "section": compact("section", f"{p.gid}1", "Untitled section")} for p in projects],
        "modified_at": iso(task.modified_at), "notes": task.notes, "num_subtasks": len(task.subtask_gids),
        "parent": compact("task", parent.gid, parent.name, resource_subtype=parent.resource_subtype) if parent else None,
        "permalink_url": f"{APP_URL}/1/{tenant.workspace_gid}/task/{task.gid}",
        "projects": [compact("project", p.gid, p.name) for p in projects],
        "start_at": None, "start_on": task.start_on, "tags": [],
        "workspace": compact("workspace", tenant.workspace_gid, tenant.workspace_name),
    }


TASK_OPT_IN = frozenset({"html_notes", "dependencies", "dependents", "num_subtasks", "is_rendered_as_separator",
                         "created_by"})
TASK_COMPACT = ("gid", "name", "resource_type", "resource_subtype", "created_by")


def webhook_json(webhook: Webhook, tenant: Tenant) -> dict[str, Any]:
    resource = tenant.projects.get(webhook.resource_gid) or tenant.tasks.get(webhook.resource_gid)
    return {
        "gid": webhook.gid, "resource_type": "webhook", "active": webhook.active,
        "resource": compact(webhook.resource_type, webhook.resource_gid, getattr(resource, "name", None)),
        "target": webhook.target, "created_at": iso(webhook.created_at),
        "last_success_at": iso(webhook.last_success_at) if webhook.last_success_at else None,
        "last_failure_at": iso(webhook.last_failure_at) if webhook.last_failure_at else None,
        "last_failure_content": webhook.last_failure_content,
        "delivery_retry_count": webhook.delivery_retry_count, "next_attempt_after": None,
        "failure_deletion_timestamp": None, "filters": list(webhook.filters),
    }


def parse_opt_fields(values: list[str]) -> list[str]:
    """``opt_fields`` as sent (repeated or comma separated) -> dotted paths."""
    return [part.strip() for raw in values for part in raw.split(",") if part.strip()]


Expander = Callable[[dict[str, Any]], dict[str, Any] | None]


def project_fields(record: dict[str, Any], paths: list[str], expand: Expander | None = None) -> dict[str, Any]:
    """``record`` cut down to ``gid`` and the dotted ``paths`` asked for.

    A nested object asked for by subfield (``assignee.email``) is first expanded to its full
    record by ``expand`` (compact references carry only gid, type and name).
    """
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        parts = path.split(".")
        for depth, part in enumerate(parts):
            child = node.get(part)
            if depth == len(parts) - 1:
                node.setdefault(part, None)
            else:
                if not isinstance(child, dict):
                    child = node[part] = {}
                node = child
    return _select(record, tree, expand, top=True)


def _select(record: Any, tree: dict[str, Any], expand: Expander | None, top: bool = False) -> Any:
    if isinstance(record, list):
        return [_select(item, tree, expand) for item in record]
    if not isinstance(record, dict):
        return record
    if not top and expand is not None and "gid" in record:
        record = {**(expand(record) or {}), **record}
    out: dict[str, Any] = {"gid": record["gid"]} if "gid" in record else {}
    for name, sub in tree.items():
        if name in PAGING_FIELDS or name not in record:
            continue
        value = record[name]
        out[name] = value if sub is None or value is None else _select(value, sub, expand)
    return out
