"""Tasks, subtasks, their custom field values, task lists and (premium-only) search."""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from typing import Any

from .calls import Answer, AsanaError, Call, bool_arg, created, ok, shaped_list
from .render import TASK_COMPACT, TASK_OPT_IN, task_json
from .tenant import CustomField, Project, Task, Tenant

MAX_TEXT_VALUE = 1024
SEARCH_DEFAULT_LIMIT = 20
_WRITABLE = frozenset({"name", "notes", "html_notes", "assignee", "assignee_section", "assignee_status", "completed",
                       "due_on", "due_at", "start_on", "start_at", "custom_fields", "resource_subtype", "liked",
                       "approval_status", "external", "custom_type", "custom_type_status_option"})
_CREATE_ONLY = frozenset({"followers", "projects", "tags", "workspace", "memberships", "parent"})
_TAG = re.compile(r"<[^>]+>")
_SORTS = {"modified_at": "modified_at", "created_at": "created_at", "completed_at": "modified_at",
          "due_date": "modified_at", "likes": "modified_at"}


def _date(value: Any, name: str) -> str:
    try:
        return date.fromisoformat(value).isoformat() if isinstance(value, str) and len(value) == 10 else _bad_date(value, name)
    except ValueError:
        return _bad_date(value, name)


def _bad_date(value: Any, name: str) -> str:
    raise AsanaError(400, f"{name}: Not a valid date, expected YYYY-MM-DD: {value}")


def _moment(value: Any, name: str) -> float:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise AsanaError(400, f"{name}: Not a valid ISO 8601 date-time: {value}") from None
    if moment.tzinfo is None:
        raise AsanaError(400, f"{name}: A date-time needs a time zone (UTC, Z): {value}")
    return moment.timestamp()


class TaskEndpoints:
    """Mixed into the simulator: everything about tasks."""

    tenant: Tenant

    def _task(self, gid: str, name: str = "task") -> Task:
        task = self.tenant.tasks.get(gid)
        if task is None:
            raise AsanaError(404, f"{name}: Not a recognized ID: {gid}")
        return task

    # -- reads ---------------------------------------------------------------------------------

    def _task_get(self, call: Call) -> Answer:
        task = self._task(call.params["task_gid"], "task_gid")
        return ok(call.shaped(task_json(task, self.tenant), lambda r: {k: v for k, v in r.items() if k not in TASK_OPT_IN}))

    def _project_tasks(self, call: Call) -> Answer:
        project = self._project(call.params["project_gid"], "project_gid")
        return self._task_list(call, [self.tenant.tasks[g] for g in project.task_gids])

    def _tasks(self, call: Call) -> Answer:
        """``GET /tasks``: exactly one of project, section, or assignee with workspace."""
        project, section, assignee = call.arg("project"), call.arg("section"), call.arg("assignee")
        if sum(x is not None for x in (project, section, assignee)) != 1 or (assignee and not call.arg("workspace")):
            raise AsanaError(400, "Must specify exactly one of project, tag, section, user task list, or assignee + workspace")
        if project is not None or section is not None:
            gid = project or str(section)[:-1]
            tasks = [self.tenant.tasks[g] for g in self._project(gid, "project" if project else "section").task_gids]
        else:
            self._workspace(call.arg("workspace"))
            user = self.tenant.user_ref(assignee)
            if user is None:
                raise AsanaError(400, f"assignee: Not a recognized ID: {assignee}")
            tasks = sorted((t for t in self.tenant.tasks.values() if t.assignee == user.gid), key=lambda t: int(t.gid))
        modified_since = call.arg("modified_since")
        if modified_since is not None:
            since = _moment(modified_since, "modified_since")
            tasks = [t for t in tasks if t.modified_at >= since]
        return self._task_list(call, tasks)

    def _subtasks(self, call: Call) -> Answer:
        task = self._task(call.params["task_gid"], "task_gid")
        return self._task_list(call, [self.tenant.tasks[g] for g in task.subtask_gids])

    def _task_list(self, call: Call, tasks: list[Task]) -> Answer:
        since = call.arg("completed_since")
        if since is not None:
            cutoff = self.clock.time() if since == "now" else _moment(since, "completed_since")
            tasks = [t for t in tasks if not t.completed or (t.completed_at or 0) >= cutoff]
        render = shaped_list(call, TASK_COMPACT[:4])
        return self.pager.page(call, tasks, lambda t: render(task_json(t, self.tenant)))

    # -- writes --------------------------------------------------------------------------------

    def _task_create(self, call: Call) -> Answer:
        return self._create(call, call.data, parent=None)

    def _subtask_create(self, call: Call) -> Answer:
        parent = self._task(call.params["task_gid"], "task_gid")
        data = call.data
        if "parent" in data and data["parent"] != parent.gid:
            raise AsanaError(400, "parent: Cannot be given when creating a subtask through its parent")
        return self._create(call, data, parent=parent)

    def _create(self, call: Call, data: dict[str, Any], parent: Task | None) -> Answer:
        unknown = set(data) - _WRITABLE - _CREATE_ONLY
        if unknown:
            raise AsanaError(400, f"{sorted(unknown)[0]}: Unknown property")
        if parent is None and data.get("parent") is not None:
            parent = self.tenant.tasks.get(str(data["parent"]))
            if parent is None:
                raise AsanaError(400, f"parent: Not a recognized ID: {data['parent']}")
        projects = self._projects_of(data.get("projects"))
        workspace = data.get("workspace")
        if workspace is None and not projects and parent is None:
            raise AsanaError(400, "You should specify one of workspace, parent, projects")
        if workspace is not None:
            self._workspace(str(workspace))
        now = self.clock.time()
        task = Task(self.tenant.mint(), "", now, now, call.caller.user_gid, project_gids=[p.gid for p in projects],
                    parent=parent.gid if parent else None, follower_gids=[call.caller.user_gid])
        for follower in data.get("followers") or []:
            user = self.tenant.user_ref(follower)
            if user is None:
                raise AsanaError(400, f"followers: Not a recognized ID: {follower}")
            task.follower_gids.append(user.gid)
        self._apply(task, data, creating=True)
        task.follower_gids = list(dict.fromkeys(task.follower_gids + ([task.assignee] if task.assignee else [])))
        self.tenant.tasks[task.gid] = task
        for project in projects:
            project.task_gids.append(task.gid)
        if parent is not None:
            parent.subtask_gids.append(task.gid)
        self._index(task)
        self._task_added(task, call.caller.user_gid)
        body = task_json(task, self.tenant)
        return created(call.shaped(body, lambda r: {k: v for k, v in r.items() if k not in TASK_OPT_IN}),
                       f"/tasks/{task.gid}")

    def _task_update(self, call: Call) -> Answer:
        task = self._task(call.params["task_gid"], "task_gid")
        data = call.data
        fixed = set(data) & _CREATE_ONLY
        if fixed:
            name = sorted(fixed)[0]
            hint = "setParent" if name == "parent" else "the add/remove endpoints"
            raise AsanaError(400, f"{name}: Cannot be changed with PUT; use {hint}")
        unknown = set(data) - _WRITABLE
        if unknown:
            raise AsanaError(400, f"{sorted(unknown)[0]}: Unknown property")
        before = task.snapshot()
        self._apply(task, data, creating=False)
        task.modified_at = self.clock.time()
        self._index(task)
        self._task_changed(task, before, call.caller.user_gid)
        return ok(call.shaped(task_json(task, self.tenant), lambda r: {k: v for k, v in r.items() if k not in TASK_OPT_IN}))

    def _task_delete(self, call: Call) -> Answer:
        task = self._task(call.params["task_gid"], "task_gid")
        self._delete_task(task, call.caller.user_gid)
        return ok({})

    def _delete_task(self, task: Task, actor: str) -> None:
        for gid in list(task.subtask_gids):
            if gid in self.tenant.tasks:
                self._delete_task(self.tenant.tasks[gid], actor)
        self._task_deleted(task, actor)
        for project in self.tenant.projects.values():
            if task.gid in project.task_gids:
                project.task_gids.remove(task.gid)
        parent = self.tenant.tasks.get(task.parent or "")
        if parent is not None and task.gid in parent.subtask_gids:
            parent.subtask_gids.remove(task.gid)
        del self.tenant.tasks[task.gid]

    def _projects_of(self, refs: Any) -> list[Project]:
        if refs is None:
            return []
        if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
            raise AsanaError(400, "projects: Not an array of project gids")
        projects = []
        for ref in refs:
            project = self.tenant.projects.get(ref)
            if project is None:
                raise AsanaError(400, f"projects: Not a recognized ID: {ref}")
            projects.append(project)
        return projects

    def _apply(self, task: Task, data: dict[str, Any], *, creating: bool) -> None:
        """Validate every given field first, then write them: a refused request changes nothing."""
        changes: dict[str, Any] = {}
        if "name" in data:
            if not isinstance(data["name"], str):
                raise AsanaError(400, "name: Not a string")
            changes["name"] = data["name"]
        if "html_notes" in data:
            changes["notes"] = _TAG.sub("", str(data["html_notes"]))
        if "notes" in data:
            if not isinstance(data["notes"], str):
                raise AsanaError(400, "notes: Not a string")
            changes["notes"] = data["notes"]
        if "completed" in data:
            if not isinstance(data["completed"], bool):
                raise AsanaError(400, "completed: Not a boolean")
            changes["completed"] = data["completed"]
        if "assignee" in data:
            assignee = data["assignee"]
            user = None if assignee is None else self.tenant.user_ref(assignee)
            if assignee is not None and user is None:
                raise AsanaError(400, f"assignee: Not a recognized ID: {assignee}")
            changes["assignee"] = user.gid if user else None
        if data.get("due_on") is not None and data.get("due_at") is not None:
            raise AsanaError(400, "You may only provide one of due_on or due_at")
        for name in ("due_on", "start_on"):
            if name in data:
                changes[name] = None if data[name] is None else _date(data[name], name)
        if "due_at" in data:
            changes["due_at"] = None if data["due_at"] is None else str(data["due_at"])
            if data["due_at"] is not None:
                _moment(data["due_at"], "due_at")
                changes["due_on"] = None
        elif changes.get("due_on"):
            changes["due_at"] = None
        if "resource_subtype" in data:
            if data["resource_subtype"] not in ("default_task", "milestone", "approval"):
                raise AsanaError(400, f"resource_subtype: Not a valid task subtype: {data['resource_subtype']}")
            changes["resource_subtype"] = data["resource_subtype"]
        custom = self._custom_values(task, data["custom_fields"]) if "custom_fields" in data else None
        for name, value in changes.items():
            setattr(task, name, value)
        if "completed" in changes:
            task.completed_at = self.clock.time() if task.completed else None
        if custom is not None:
            for gid, value in custom.items():
                if value is None:
                    task.custom.pop(gid, None)
                else:
                    task.custom[gid] = value

    def _custom_values(self, task: Task, values: Any) -> dict[str, Any]:
        """``custom_fields`` of a write, checked against the fields of the task's projects."""
        if not isinstance(values, dict):
            raise AsanaError(400, "custom_fields: Not an object keyed by custom field gid")
        allowed = {g for p in task.project_gids if p in self.tenant.projects for g in self.tenant.projects[p].field_gids}
        checked: dict[str, Any] = {}
        for gid, value in values.items():
            custom_field = self.tenant.fields.get(gid)
            if custom_field is None:
                raise AsanaError(400, f"custom_fields: Not a recognized ID: {gid}")
            if gid not in allowed:
                raise AsanaError(400, f"custom_fields: Custom field with ID {gid} is not on given object")
            checked[gid] = None if value is None else self._custom_value(custom_field, value)
        return checked

    def _custom_value(self, custom_field: CustomField, value: Any) -> Any:
        where = f"custom_fields: {custom_field.gid} ({custom_field.name})"
        if custom_field.subtype == "text":
            if not isinstance(value, str):
                raise AsanaError(400, f"{where}: Text value expected")
            if len(value) > MAX_TEXT_VALUE:
                raise AsanaError(400, f"{where}: Text value is too long (the limit is {MAX_TEXT_VALUE} characters)")
            return value
        if custom_field.subtype == "number":
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise AsanaError(400, f"{where}: Number value expected")
            return float(value)
        if custom_field.subtype == "date":
            day = value.get("date") if isinstance(value, dict) else value
            return _date(day, where)
        found = self.tenant.option(value) if isinstance(value, str) else None
        if found is None or found[0].gid != custom_field.gid:
            raise AsanaError(400, f"{where}: Enum option value must be the gid of one of the field's enum options: {value}")
        if not found[1].enabled:
            raise AsanaError(400, f"{where}: Enum option {value} is disabled and cannot be set")
        return value

    # -- search (premium) ----------------------------------------------------------------------

    def _index(self, task: Task) -> None:
        task.versions.append((self.clock.time() + self.index_delay_s * self.time_scale, task.snapshot()))
        del task.versions[:-8]

    def _search(self, call: Call) -> Answer:
        self._workspace(call.params["workspace_gid"], "workspace_gid")
        if not self.premium:
            raise AsanaError(402, "Search is only available to premium users.")
        limit = int(call.arg("limit", str(SEARCH_DEFAULT_LIMIT)) or SEARCH_DEFAULT_LIMIT)
        if not 1 <= limit <= 100:
            raise AsanaError(400, "limit: The value must be between 1 and 100, inclusive")
        now = self.clock.time()
        hits = []
        for task in self.tenant.tasks.values():
            visible = [snap for at, snap in task.versions if at <= now]
            if visible and self._search_matches(call, visible[-1]):
                hits.append((task, visible[-1]))
        key = _SORTS.get(call.arg("sort_by", "modified_at") or "modified_at", "modified_at")
        hits.sort(key=lambda hit: hit[1][key], reverse=bool_arg(call, "sort_ascending") is not True)
        render = shaped_list(call, TASK_COMPACT[:4])
        return ok([render(task_json(task, self.tenant)) for task, _ in hits[:limit]])

    def _search_matches(self, call: Call, snap: dict[str, Any]) -> bool:
        text = (call.arg("text") or "").casefold()
        if text and text not in snap["name"].casefold() and text not in snap["notes"].casefold():
            return False
        projects = {p for p in (call.arg("projects.any") or "").split(",") if p}
        if projects and not projects & set(snap["projects"]):
            return False
        for flag, actual in (("completed", snap["completed"]), ("is_subtask", snap["parent"] is not None)):
            wanted = bool_arg(call, flag)
            if wanted is not None and wanted != actual:
                return False
        after = call.arg("modified_at.after")
        if after is not None and snap["modified_at"] <= _moment(after, "modified_at.after"):
            return False
        for name, values in call.query.items():
            match = re.fullmatch(r"custom_fields\.(\d+)\.(value|is_set)", name)
            if not match:
                continue
            stored = snap["custom"].get(match[1])
            if match[2] == "is_set" and (stored is not None) != (values[-1] == "true"):
                return False
            if match[2] == "value" and str(stored if not isinstance(stored, float) else f"{stored:g}") != values[-1]:
                return False
        return True
