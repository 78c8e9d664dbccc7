"""Workspaces, users, projects, custom fields and their enum options, project templates and jobs."""

from __future__ import annotations

from typing import Any

from .calls import Answer, AsanaError, Call, bool_arg, created, ok, required, shaped_list
from .render import (
    custom_field_json,
    custom_field_setting_json,
    job_json,
    option_json,
    project_json,
    template_json,
    user_json,
    workspace_json,
)
from .tenant import (
    CustomField,
    Job,
    Project,
    ProjectTemplate,
    Task,
    Tenant,
    User,
    day_after,
)

MAX_ENUM_OPTIONS = 500
MAX_OPTION_NAME = 200
INSTANTIATE_DELAY_S = 2.0
_COMPACT = ("gid", "name", "resource_type")
_ENUM_COLOURS = frozenset({"none", "red", "orange", "yellow-orange", "yellow", "yellow-green", "green", "blue-green",
                           "aqua", "blue", "indigo", "purple", "magenta", "hot-pink", "pink", "cool-gray"})


class CatalogEndpoints:
    """Mixed into the simulator: the organisation's structure and reference data."""

    tenant: Tenant

    # -- lookups -------------------------------------------------------------------------------

    def _workspace(self, gid: str | None, name: str = "workspace") -> None:
        if gid is None:
            raise AsanaError(400, f"{name}: Missing input")
        if gid != self.tenant.workspace_gid:
            raise AsanaError(404 if name == "workspace_gid" else 400, f"{name}: Not a recognized ID: {gid}")

    def _project(self, gid: str, name: str = "project") -> Project:
        project = self.tenant.projects.get(gid)
        if project is None:
            raise AsanaError(404, f"{name}: Not a recognized ID: {gid}")
        return project

    def _custom_field(self, gid: str) -> CustomField:
        custom_field = self.tenant.fields.get(gid)
        if custom_field is None:
            raise AsanaError(404, f"custom_field: Not a recognized ID: {gid}")
        return custom_field

    def _user(self, ref: str) -> User:
        user = self.tenant.user_ref(ref)
        if user is None:
            raise AsanaError(404, f"user: Not a recognized ID: {ref}")
        return user

    # -- workspaces and users ------------------------------------------------------------------

    def _workspaces(self, call: Call) -> Answer:
        render = shaped_list(call, _COMPACT)
        return self.pager.page(call, [self.tenant], lambda t: render(workspace_json(t)), gid=lambda t: t.workspace_gid)

    def _workspace_get(self, call: Call) -> Answer:
        self._workspace(call.params["workspace_gid"], "workspace_gid")
        return ok(call.shaped(workspace_json(self.tenant)))

    def _users(self, call: Call) -> Answer:
        workspace = call.params.get("workspace_gid") or call.arg("workspace")
        if call.arg("team") is None:
            self._workspace(workspace)
        users = sorted(self.tenant.users.values(), key=lambda u: int(u.gid))
        render = shaped_list(call, _COMPACT)
        return self.pager.page(call, users, lambda u: render(user_json(u, self.tenant)))

    def _user_get(self, call: Call) -> Answer:
        user = self._user(call.params["user_gid"])
        return ok(call.shaped(user_json(user, self.tenant)))

    # -- projects ------------------------------------------------------------------------------

    def _projects(self, call: Call) -> Answer:
        workspace = call.params.get("workspace_gid") or call.arg("workspace")
        team = call.arg("team")
        if team is None:
            self._workspace(workspace)
        elif team != self.tenant.team_gid:
            raise AsanaError(400, f"team: Not a recognized ID: {team}")
        archived = bool_arg(call, "archived")
        projects = [p for p in self.tenant.projects.values() if archived is None or p.archived == archived]
        render = shaped_list(call, _COMPACT)
        return self.pager.page(call, projects, lambda p: render(project_json(p, self.tenant)))

    def _project_get(self, call: Call) -> Answer:
        project = self._project(call.params["project_gid"], "project_gid")
        return ok(call.shaped(project_json(project, self.tenant),
                              lambda r: {k: v for k, v in r.items() if k not in ("html_notes", "created_from_template")}))

    def _project_fields(self, call: Call) -> Answer:
        project = self._project(call.params["project_gid"], "project_gid")
        settings = [custom_field_setting_json(project, self.tenant.fields[g], self.tenant) for g in project.field_gids]
        render = shaped_list(call, ("gid", "resource_type", "custom_field", "is_important", "parent", "project"))
        return self.pager.page(call, settings, render, gid=lambda s: s["gid"])

    # -- custom fields and enum options --------------------------------------------------------

    def _custom_fields(self, call: Call) -> Answer:
        self._workspace(call.params["workspace_gid"], "workspace_gid")
        render = shaped_list(call, ("gid", "name", "resource_type", "resource_subtype", "type", "enum_options",
                                    "precision", "description"))
        return self.pager.page(call, list(self.tenant.fields.values()), lambda f: render(custom_field_json(f, self.tenant)))

    def _custom_field_get(self, call: Call) -> Answer:
        return ok(call.shaped(custom_field_json(self._custom_field(call.params["custom_field_gid"]), self.tenant)))

    def _enum_option_create(self, call: Call) -> Answer:
        custom_field = self._custom_field(call.params["custom_field_gid"])
        if custom_field.subtype != "enum":
            raise AsanaError(400, "custom_field: Enum options can only be added to enum and multi_enum custom fields")
        data = call.data
        name = self._option_name(data)
        color = self._option_colour(data.get("color"))
        if len(custom_field.options) >= MAX_ENUM_OPTIONS:
            raise AsanaError(400, f"enum_options: A custom field can have at most {MAX_ENUM_OPTIONS} enum options")
        if any(o.name.casefold() == name.casefold() for o in custom_field.options):
            raise AsanaError(400, f"name: An enum option named {name} already exists on this custom field")
        before, after = data.get("insert_before"), data.get("insert_after")
        if before is not None and after is not None:
            raise AsanaError(400, "insert_before: Cannot be provided together with insert_after")
        position = None
        for anchor, shift in ((before, 0), (after, 1)):
            if anchor is not None:
                index = next((i for i, o in enumerate(custom_field.options) if o.gid == anchor), None)
                if index is None:
                    raise AsanaError(400, f"{'insert_before' if shift == 0 else 'insert_after'}: Not a recognized ID: {anchor}")
                position = index + shift
        enabled = data.get("enabled", True)
        if not isinstance(enabled, bool):
            raise AsanaError(400, "enabled: Not a boolean")
        option = self.tenant.add_option(custom_field, name, color, enabled=enabled, position=position)
        return created(call.shaped(option_json(option)), f"/enum_options/{option.gid}")

    def _enum_option_update(self, call: Call) -> Answer:
        found = self.tenant.option(call.params["enum_option_gid"])
        if found is None:
            raise AsanaError(404, f"enum_option: Not a recognized ID: {call.params['enum_option_gid']}")
        custom_field, option = found
        data = call.data
        unknown = set(data) - {"name", "color", "enabled"}
        if unknown:
            raise AsanaError(400, f"{sorted(unknown)[0]}: Cannot write this property")
        if "name" in data:
            name = self._option_name(data)
            if any(o.name.casefold() == name.casefold() and o.gid != option.gid for o in custom_field.options):
                raise AsanaError(400, f"name: An enum option named {name} already exists on this custom field")
            option.name = name
        if "color" in data:
            option.color = self._option_colour(data["color"]) or option.color
        if "enabled" in data:
            if not isinstance(data["enabled"], bool):
                raise AsanaError(400, "enabled: Not a boolean")
            option.enabled = data["enabled"]
        return ok(call.shaped(option_json(option)))

    @staticmethod
    def _option_name(data: dict[str, Any]) -> str:
        name = required(data, "name")
        if not isinstance(name, str) or not name.strip():
            raise AsanaError(400, "name: Missing input")
        if len(name) > MAX_OPTION_NAME:
            raise AsanaError(400, f"name: Value is too long (the limit is {MAX_OPTION_NAME} characters)")
        return name.strip()

    @staticmethod
    def _option_colour(color: Any) -> str | None:
        if color is None:
            return None
        if color not in _ENUM_COLOURS:
            raise AsanaError(400, f"color: Not a valid enum option color: {color}")
        return str(color)

    # -- project templates and jobs ------------------------------------------------------------

    def _templates(self, call: Call) -> Answer:
        workspace, team = call.arg("workspace"), call.params.get("team_gid") or call.arg("team")
        if team is not None:
            if team != self.tenant.team_gid:
                raise AsanaError(400 if "team_gid" not in call.params else 404, f"team: Not a recognized ID: {team}")
        else:
            self._workspace(workspace)
        render = shaped_list(call, _COMPACT)
        return self.pager.page(call, list(self.tenant.templates.values()), lambda t: render(template_json(t, self.tenant)))

    def _template(self, gid: str) -> ProjectTemplate:
        template = self.tenant.templates.get(gid)
        if template is None:
            raise AsanaError(404, f"project_template: Not a recognized ID: {gid}")
        return template

    def _template_get(self, call: Call) -> Answer:
        return ok(call.shaped(template_json(self._template(call.params["project_template_gid"]), self.tenant)))

    def _instantiate(self, call: Call) -> Answer:
        """Instantiation is a job: the project exists at once, its tasks appear when the job succeeds."""
        template = self._template(call.params["project_template_gid"])
        data = call.data
        name = required(data, "name")
        team = data.get("team", template.team)
        if team != self.tenant.team_gid:
            raise AsanaError(400, f"team: Not a recognized ID: {team}")
        dates: dict[str, str | None] = {}
        for entry in data.get("requested_dates") or []:
            if not isinstance(entry, dict) or entry.get("gid") not in {g for g, _, _ in template.requested_dates}:
                raise AsanaError(400, f"requested_dates: Not a date variable of this template: {entry}")
            value = entry.get("value")
            dates[entry["gid"]] = value[:10] if isinstance(value, str) else None
        missing = [g for g, _, _ in template.requested_dates if not dates.get(g)]
        if missing and data.get("is_strict"):
            raise AsanaError(422, f"requested_dates: Missing a calendar date for date variable {missing[0]}")
        start = dates.get("1") or self.now().date().isoformat()
        now = self.clock.time()
        project = Project(self.tenant.mint(), str(name), team, call.caller.user_gid, now, now,
                          notes=template.description, color=template.color, field_gids=list(template.field_gids),
                          template_gid=template.gid, start_on=start,
                          due_on=day_after(start, max(t.start_offset_days for t in template.tasks)))
        self.tenant.projects[project.gid] = project
        job = Job(self.tenant.mint(), "duplicate_project", "in_progress",
                  now + self.instantiate_delay_s * self.time_scale, new_project=project.gid)
        self.tenant.jobs[job.gid] = job
        return created(call.shaped(job_json(job, self.tenant)), f"/jobs/{job.gid}")

    def _job_get(self, call: Call) -> Answer:
        job = self.tenant.jobs.get(call.params["job_gid"])
        if job is None:
            raise AsanaError(404, f"job: Not a recognized ID: {call.params['job_gid']}")
        self._advance_job(job)
        return ok(call.shaped(job_json(job, self.tenant)))

    def _advance_jobs(self) -> None:
        for job in self.tenant.jobs.values():
            self._advance_job(job)

    def _advance_job(self, job: Job) -> None:
        if job.status != "in_progress" or self.clock.time() < job.done_at:
            return
        project = self.tenant.projects.get(job.new_project or "")
        template = self.tenant.templates.get(project.template_gid or "") if project else None
        if project is None or template is None:
            job.status = "failed"
            return
        for spec in template.tasks:
            task = Task(self.tenant.mint(), spec.name, job.done_at, job.done_at, project.owner, notes=spec.notes,
                        due_on=day_after(project.start_on or self.now().date().isoformat(), spec.start_offset_days), project_gids=[project.gid],
                        follower_gids=[project.owner])
            task.versions = [(job.done_at, task.snapshot())]
            self.tenant.tasks[task.gid] = task
            project.task_gids.append(task.gid)
        job.status = "succeeded"
