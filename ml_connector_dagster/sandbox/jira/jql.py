"""JQL: the subset real connectors send, parsed and evaluated as Jira Cloud does."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .records import (
    Issue,
)
from .site import (
    CATEGORIES,
    PRIORITIES,
    RESOLUTIONS,
    User,
)


class JqlError(ValueError):
    """A JQL query Jira would refuse (400), worded as Jira words it."""

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<cf>cf\[\d+\])
      | (?P<op>!=|!~|>=|<=|=|~|>|<)
      | (?P<punct>[(),])
      | (?P<word>[^\s"'(),=!~<>]+)
    )""",
    re.X | re.I,
)

_KEYWORDS = {"and", "or", "not", "in", "is", "empty", "null", "order", "by", "asc", "desc"}
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t"}
_DATE_FORMATS = ("%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M", "%Y/%m/%d", "%Y-%m-%d")
_PERIOD = re.compile(r"^([-+]?)\s*((?:\d+\s*[wdhm]\s*)+)$", re.I)
_PERIOD_PART = re.compile(r"(\d+)\s*([wdhm])", re.I)
_PERIOD_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60}

_DATE_HELP = (
    "Valid formats include: 'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', "
    "or a period format e.g. '-5d', '4w 2d'."
)


@dataclass(frozen=True)
class _Tok:
    kind: str  # string | cf | op | punct | word | kw | end
    text: str
    pos: int


@dataclass(frozen=True)
class JqlValue:
    kind: str  # string | word | func | empty
    text: str


@dataclass(frozen=True)
class Clause:
    field: str
    op: str  # = != ~ !~ > >= < <= in "not in" is "is not"
    values: tuple[JqlValue, ...]


@dataclass(frozen=True)
class BoolNode:
    op: str  # and | or | not
    parts: tuple[Any, ...]


@dataclass(frozen=True)
class JqlQuery:
    where: Clause | BoolNode | None
    order: tuple[tuple[str, bool], ...]  # (field, descending)


def _unquote(raw: str) -> str:
    body = raw[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m[1], m[1]), body)


def _tokens(jql: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(jql):
        if jql[pos:].strip() == "":
            break
        match = _TOKEN.match(jql, pos)
        if match is None or match.end() == pos:
            char = jql[pos:].lstrip()[:1]
            raise JqlError(f"Error in the JQL Query: The character '{char}' is a reserved JQL character. (line 1, character {pos + 1})")
        group = match.lastgroup or "word"
        text = match[group]
        kind = "kw" if group == "word" and text.lower() in _KEYWORDS else group
        tokens.append(_Tok(kind, text, match.start(group) + 1))
        pos = match.end()
    tokens.append(_Tok("end", "", len(jql) + 1))
    return tokens


class _Parser:
    """Recursive descent over the JQL subset real connectors send."""

    def __init__(self, jql: str) -> None:
        self.tokens = _tokens(jql)
        self.i = 0

    def peek(self) -> _Tok:
        return self.tokens[self.i]

    def take(self) -> _Tok:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def is_kw(self, *words: str) -> bool:
        tok = self.peek()
        return tok.kind == "kw" and tok.text.lower() in words

    def fail(self, expected: str) -> JqlError:
        tok = self.peek()
        got = "the end of the query" if tok.kind == "end" else f"'{tok.text}'"
        return JqlError(f"Error in the JQL Query: Expecting {expected} but got {got}. (line 1, character {tok.pos})")

    def query(self) -> JqlQuery:
        where = None if self.is_kw("order") or self.peek().kind == "end" else self.or_expr()
        order: list[tuple[str, bool]] = []
        if self.is_kw("order"):
            self.take()
            if not self.is_kw("by"):
                raise self.fail("'by'")
            self.take()
            while True:
                tok = self.take()
                if tok.kind not in {"word", "string", "cf"}:
                    self.i -= 1
                    raise self.fail("a field name")
                name = _unquote(tok.text) if tok.kind == "string" else tok.text
                descending = False
                if self.is_kw("asc", "desc"):
                    descending = self.take().text.lower() == "desc"
                order.append((name, descending))
                if self.peek().kind == "punct" and self.peek().text == ",":
                    self.take()
                    continue
                break
        if self.peek().kind != "end":
            raise self.fail("either 'OR' or 'AND'" if where is not None else "a field name")
        return JqlQuery(where, tuple(order))

    def or_expr(self) -> Clause | BoolNode:
        parts = [self.and_expr()]
        while self.is_kw("or"):
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else BoolNode("or", tuple(parts))

    def and_expr(self) -> Clause | BoolNode:
        parts = [self.not_expr()]
        while self.is_kw("and"):
            self.take()
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else BoolNode("and", tuple(parts))

    def not_expr(self) -> Clause | BoolNode:
        if self.is_kw("not"):
            self.take()
            return BoolNode("not", (self.not_expr(),))
        tok = self.peek()
        if tok.kind == "punct" and tok.text == "(":
            self.take()
            inner = self.or_expr()
            if not (self.peek().kind == "punct" and self.peek().text == ")"):
                raise self.fail("')'")
            self.take()
            return inner
        return self.clause()

    def clause(self) -> Clause:
        tok = self.take()
        if tok.kind not in {"word", "string", "cf"}:
            self.i -= 1
            raise self.fail("a field name")
        name = _unquote(tok.text) if tok.kind == "string" else tok.text
        op_tok = self.take()
        if op_tok.kind == "op":
            op = op_tok.text
        elif op_tok.kind == "kw" and op_tok.text.lower() == "in":
            op = "in"
        elif op_tok.kind == "kw" and op_tok.text.lower() == "not" and self.is_kw("in"):
            self.take()
            op = "not in"
        elif op_tok.kind == "kw" and op_tok.text.lower() == "is":
            op = "is"
            if self.is_kw("not"):
                self.take()
                op = "is not"
        else:
            self.i -= 1
            raise self.fail("operator")
        if op in {"in", "not in"}:
            return Clause(name, op, self.value_list())
        return Clause(name, op, (self.value(),))

    def value_list(self) -> tuple[JqlValue, ...]:
        tok = self.peek()
        if not (tok.kind == "punct" and tok.text == "("):
            return (self.value(),)  # `in membersOf(...)`-style functions are not modelled
        self.take()
        values = [self.value()]
        while self.peek().kind == "punct" and self.peek().text == ",":
            self.take()
            values.append(self.value())
        if not (self.peek().kind == "punct" and self.peek().text == ")"):
            raise self.fail("')'")
        self.take()
        return tuple(values)

    def value(self) -> JqlValue:
        tok = self.take()
        if tok.kind == "string":
            return JqlValue("string", _unquote(tok.text))
        if tok.kind == "kw" and tok.text.lower() in {"empty", "null"}:
            return JqlValue("empty", "")
        if tok.kind == "word":
            if self.peek().kind == "punct" and self.peek().text == "(":
                self.take()
                while not (self.peek().kind == "punct" and self.peek().text == ")"):
                    if self.peek().kind == "end":
                        raise self.fail("')'")
                    self.take()
                self.take()
                return JqlValue("func", tok.text.lower())
            return JqlValue("word", tok.text)
        self.i -= 1
        raise self.fail("either a value, list or function")


def parse_jql(jql: str) -> JqlQuery:
    """Parse ``jql`` (raises :class:`JqlError` with Jira's wording)."""
    return _Parser(jql).query()


def iter_clauses(node: Clause | BoolNode | None) -> Iterator[Clause]:
    if isinstance(node, Clause):
        yield node
    elif isinstance(node, BoolNode):
        for part in node.parts:
            yield from iter_clauses(part)

_WORDS = re.compile(r"[^\W_]+", re.UNICODE)


def _text_terms(value: str) -> list[str]:
    return [w.lower() for w in _WORDS.findall(value)]


def _required_terms(query: str) -> list[str] | None:
    """Terms every issue :func:`_text_matches` finds for ``query`` contains; None when a wildcard
    leaves that open."""
    query = query.strip()
    if len(query) >= 2 and query[0] == query[-1] == '"':
        return _text_terms(query[1:-1])
    terms: list[str] = []
    for raw in query.split():
        if raw.endswith("*") and len(raw) > 1:
            return None
        terms += _text_terms(raw)
    return terms


def _text_matches(haystack: str | None, query: str) -> bool:
    """Jira's ``~``: every term present (``*`` suffix wildcards), or a quoted phrase in order."""
    if not haystack:
        return False
    words = _text_terms(haystack)
    query = query.strip()
    if len(query) >= 2 and query[0] == query[-1] == '"':
        phrase = _text_terms(query[1:-1])
        return bool(phrase) and any(words[i : i + len(phrase)] == phrase for i in range(len(words) - len(phrase) + 1))
    for raw in query.split():
        if raw.endswith("*") and len(raw) > 1:
            stem = raw[:-1].lower()
            if not any(w.startswith(stem) for w in words):
                return False
            continue
        if any(term not in words for term in _text_terms(raw)):
            return False
    return True


def _is_present(value: Any) -> bool:
    return value is not None and value != [] and value != ""


def _compare(attr: str, op: str, targets: set[Any]) -> Callable[[dict[str, Any]], bool]:
    return _membership(lambda s: s.get(attr), op, targets)


def _membership(get: Callable[[dict[str, Any]], Any], op: str, targets: set[Any]) -> Callable[[dict[str, Any]], bool]:
    """``=``/``IN`` match; ``!=``/``NOT IN`` never match an empty value (as in Jira); orderings."""
    if op in {"=", "in"}:
        return lambda s: get(s) in targets
    if op in {"!=", "not in"}:
        return lambda s: get(s) is not None and get(s) not in targets
    if None in targets or len(targets) != 1:
        raise JqlError(f"The operator '{op}' needs a single value.")
    (target,) = targets
    compare = {">": lambda v: v > target, ">=": lambda v: v >= target,
               "<": lambda v: v < target, "<=": lambda v: v <= target}[op]
    return lambda s: get(s) is not None and compare(get(s))

_EQ = frozenset({"=", "!=", "in", "not in", "is", "is not"})
_ORD = _EQ | {">", ">=", "<", "<="}
_TEXT = frozenset({"~", "!~", "is", "is not"})

_JQL_OPERATORS: dict[str, frozenset[str]] = {
    "project": _EQ, "issuetype": _EQ, "status": _EQ, "category": _EQ, "resolution": _EQ, "priority": _EQ,
    "user": _EQ, "key": _EQ, "id": _ORD, "parent": _EQ, "text": _TEXT, "exact": _EQ, "number": _ORD,
    "datetime": _ORD, "date": _ORD, "labels": _EQ,
}

# JQL clause name -> (snapshot attribute, kind).
_JQL_FIELDS: dict[str, tuple[str, str]] = {
    "project": ("project", "project"),
    "issuetype": ("issuetype", "issuetype"),
    "type": ("issuetype", "issuetype"),
    "status": ("status", "status"),
    "statuscategory": ("status", "category"),
    "resolution": ("resolution", "resolution"),
    "priority": ("priority", "priority"),
    "assignee": ("assignee", "user"),
    "reporter": ("reporter", "user"),
    "key": ("key", "key"),
    "issuekey": ("key", "key"),
    "id": ("id", "id"),
    "parent": ("parent", "parent"),
    "summary": ("summary", "text"),
    "description": ("description", "text"),
    "text": ("*text", "text"),
    "labels": ("labels", "labels"),
    "created": ("created", "datetime"),
    "createddate": ("created", "datetime"),
    "updated": ("updated", "datetime"),
    "updateddate": ("updated", "datetime"),
    "resolved": ("resolutiondate", "datetime"),
    "resolutiondate": ("resolutiondate", "datetime"),
    "duedate": ("duedate", "date"),
    "due": ("duedate", "date"),
}

WEBHOOK_JQL_FIELDS = frozenset({"issuekey", "key", "project", "issuetype", "type", "status", "assignee", "reporter"})


class JqlSearch:
    """Mixed into the simulator: JQL validation and evaluation against the issue index."""

    def _run_jql(self, jql: Any, user: User, reconcile_ids: set[int]) -> list[Issue]:
        """The issues ``jql`` finds in the index, in order, each as the index holds it (the issue as it is
        now for ``reconcile_ids``)."""
        if not isinstance(jql, str) or not jql.strip():
            raise JqlError("Unbounded JQL queries are not allowed here. Please add a search restriction to your query.")
        query = parse_jql(jql)
        if query.where is None:
            raise JqlError("Unbounded JQL queries are not allowed here. Please add a search restriction to your query.")
        predicate = self._check_jql(query, user)
        now = self.clock.time()
        found: list[tuple[Issue, dict[str, Any]]] = []
        candidates = self._candidates(query.where)
        pool = self.issues.values() if candidates is None else [
            self.issues[issue_id] for issue_id in candidates | reconcile_ids if issue_id in self.issues]
        for issue in pool:
            indexed = (issue.snapshot(), issue) if issue.id in reconcile_ids else self._indexed(issue, now)
            if indexed is not None and predicate(indexed[0]):
                found.append((indexed[1], indexed[0]))
        found.sort(key=lambda pair: pair[0].id, reverse=True)
        order = query.order or (("created", True),)
        for name, descending in reversed(order):
            key = self._sort_key(name)
            present = [p for p in found if key(p[1]) is not None]
            missing = [p for p in found if key(p[1]) is None]
            present.sort(key=lambda p: key(p[1]), reverse=descending)
            found = missing + present if descending else present + missing
        return [issue for issue, _ in found]

    # -- the term index of text custom fields ---------------------------------------------------
    # Jira answers a lookup by external id from its index; scanning every issue for each of a search's
    # hundred ``cf[..] ~ "..."`` clauses instead made a search cost O(issues x clauses) here. The index
    # only narrows: it holds every term any indexed version ever had (a superset), and each candidate is
    # still judged on the version the search may see.

    def _record_version(self, issue: Issue, visible_at: float, *, only: bool = False) -> None:
        """Add the issue's current state to the search index, visible from ``visible_at`` (``only``:
        instead of its earlier versions)."""
        snapshot = issue.snapshot()
        if only:
            issue.versions = [(visible_at, snapshot, issue.as_indexed())]
        else:
            issue.versions.append((visible_at, snapshot, issue.as_indexed()))
            del issue.versions[:-8]
        self._index_terms(self._term_index(), issue.id, snapshot)

    def _term_index(self) -> dict[str, dict[str, set[int]]]:
        """Field id -> term -> issue ids; rebuilt from the versions when the issues were replaced (a
        restored tenant)."""
        if getattr(self, "_terms_of", None) is not self.issues:
            self._terms: dict[str, dict[str, set[int]]] = {}
            self._terms_of = self.issues
            for issue in self.issues.values():
                for _, snapshot, _ in issue.versions:
                    self._index_terms(self._terms, issue.id, snapshot)
        return self._terms

    def _index_terms(self, index: dict[str, dict[str, set[int]]], issue_id: int, snapshot: dict[str, Any]) -> None:
        text_fields = self._text_fields()
        for field_id, value in snapshot.items():
            if isinstance(value, str) and value and field_id in text_fields:
                terms = index.setdefault(field_id, {})
                for term in set(_text_terms(value)):
                    terms.setdefault(term, set()).add(issue_id)

    def _text_fields(self) -> frozenset[str]:
        return frozenset(f.id for f in self.custom_fields.values() if f.searcher == "textsearcher")

    def _candidates(self, node: Clause | BoolNode | None) -> set[int] | None:
        """Ids of a superset of the issues ``node`` can match, from the term index; None: any issue."""
        if isinstance(node, BoolNode):
            if node.op == "or":
                parts = [self._candidates(part) for part in node.parts]
                return None if any(part is None for part in parts) else set().union(*parts)  # type: ignore[arg-type]
            if node.op == "and":
                known = sorted((c for c in (self._candidates(part) for part in node.parts) if c is not None), key=len)
                return set.intersection(*known) if known else None
            return None
        if node is None or node.op != "~" or len(node.values) != 1 or node.values[0].kind not in {"string", "word"}:
            return None
        custom = self._custom_field_by_clause(node.field)
        terms = _required_terms(node.values[0].text)
        if custom is None or custom.searcher != "textsearcher" or not terms:
            return None
        postings = self._term_index().get(custom.id, {})
        return set.intersection(*sorted((postings.get(term, set()) for term in terms), key=len))

    def _sort_key(self, name: str) -> Callable[[dict[str, Any]], Any]:
        lowered = name.lower()
        custom = self._custom_field_by_clause(name)
        if custom is not None:
            return lambda s: s.get(custom.id)
        simple = {"id": "id", "created": "created", "createddate": "created", "updated": "updated",
                  "updateddate": "updated", "resolved": "resolutiondate", "resolutiondate": "resolutiondate",
                  "duedate": "duedate", "due": "duedate", "summary": "summary", "priority": "priority"}
        if lowered in simple:
            return lambda s: s.get(simple[lowered])
        if lowered in {"key", "issuekey"}:
            return lambda s: (s["key"].rsplit("-", 1)[0], int(s["key"].rsplit("-", 1)[1]))
        if lowered == "status":
            return lambda s: int(s["status"])
        if lowered in {"project", "issuetype", "type", "assignee", "reporter"}:
            attr = "issuetype" if lowered == "type" else lowered
            return lambda s: s.get(attr)
        raise JqlError(f"Field '{name}' does not exist or you do not have permission to view it.")

    def _check_jql(self, query: JqlQuery, user: User) -> Callable[[dict[str, Any]], bool]:
        """Validate ``query`` as Jira does (fields, operators, values) and compile its predicate."""
        for name, _ in query.order:
            self._sort_key(name)
        if query.where is None:
            return lambda snapshot: True
        return self._compile(query.where, user)

    def _compile(self, node: Clause | BoolNode, user: User) -> Callable[[dict[str, Any]], bool]:
        if isinstance(node, BoolNode):
            parts = [self._compile(p, user) for p in node.parts]
            if node.op == "and":
                return lambda s: all(p(s) for p in parts)
            if node.op == "or":
                return lambda s: any(p(s) for p in parts)
            return lambda s: not parts[0](s)
        return self._compile_clause(node, user)

    def _compile_clause(self, clause: Clause, user: User) -> Callable[[dict[str, Any]], bool]:
        name, op = clause.field, clause.op
        lowered = name.lower()
        custom = self._custom_field_by_clause(name)
        if custom is not None:
            kind = {"textsearcher": "text", "exacttextsearcher": "exact", "exactnumber": "number"}[custom.searcher]
            attr, label = custom.id, custom.name
        elif lowered in _JQL_FIELDS:
            attr, kind = _JQL_FIELDS[lowered]
            label = lowered
        else:
            raise JqlError(f"Field '{name}' does not exist or you do not have permission to view it.")
        if op not in _JQL_OPERATORS[kind]:
            raise JqlError(f"The operator '{op.upper() if op.isalpha() or ' ' in op else op}' is not supported by the '{label}' field.")
        empty_values = [v for v in clause.values if v.kind == "empty" or (
            kind in {"resolution"} and v.text.lower() == "unresolved")]
        if op in {"is", "is not"}:
            if len(empty_values) != len(clause.values):
                raise JqlError(f"The operator '{op.upper()}' only supports the value EMPTY or NULL for the field '{label}'.")
            present = op == "is not"
            return lambda s: _is_present(s.get(attr)) == present

        if kind in {"text", "phrase"}:
            if clause.values[0].kind not in {"string", "word"}:
                raise JqlError(f"The field '{label}' does not support searching for an empty value with '{op}'.")
            query = clause.values[0].text
            attrs = [attr] if attr != "*text" else ["summary", "description", *self.custom_fields]
            positive = op == "~"
            return lambda s: any(_text_matches(s.get(a) if isinstance(s.get(a), str) else None, query) for a in attrs) == positive
        if kind in {"datetime", "date"}:
            return self._compile_date(attr, label, kind, op, clause.values, user)

        targets = {self._jql_target(kind, label, v, user) for v in clause.values}
        if kind == "number":
            return _compare(attr, op, targets)
        if kind == "category":
            categories = {self.statuses[sid].id: self.statuses[sid].category for sid in self.statuses}
            return _membership(lambda s: categories[s["status"]], op, targets)
        if kind == "labels":
            def labels_match(s: dict[str, Any]) -> bool:
                labels = set(s.get("labels") or [])
                if op in {"=", "in"}:
                    return bool(labels & targets) or (None in targets and not labels)
                return bool(labels) and not labels & targets
            return labels_match
        return _membership(lambda s: s.get(attr), op, targets)

    def _jql_target(self, kind: str, label: str, value: JqlValue, user: User) -> Any:
        """The stored value a JQL literal stands for (raises :class:`JqlError` if Jira would)."""
        if value.kind == "empty":
            return None
        text = value.text
        missing = JqlError(f"The value '{text}' does not exist for the field '{label}'.")
        if kind == "user":
            if value.kind == "func":
                if text != "currentuser":
                    raise JqlError(f"Unable to find JQL function '{text}()'.")
                return user.account_id
            if text in self.users:
                return text
            raise missing
        if value.kind == "func":
            raise JqlError(f"Unable to find JQL function '{text}()'.")
        lowered = text.lower()
        if kind == "project":
            project = self._find_project(text) or next((p for p in self.projects.values() if p.name.lower() == lowered), None)
            if project is None:
                raise missing
            return project.id
        if kind == "issuetype":
            found = next((t.id for t in self.issue_types.values() if t.id == text or t.name.lower() == lowered), None)
        elif kind == "status":
            found = next((s.id for s in self.statuses.values() if s.id == text or s.name.lower() == lowered), None)
        elif kind == "category":
            found = next((key for key, (cid, cname, _) in CATEGORIES.items()
                          if lowered in {key, cname.lower(), str(cid)}), None)
        elif kind == "resolution":
            if lowered == "unresolved":
                return None
            found = next((rid for rid, rname in RESOLUTIONS.items() if rid == text or rname.lower() == lowered), None)
        elif kind == "priority":
            found = next((pid for pid, pname in PRIORITIES.items() if pid == text or pname.lower() == lowered), None)
        elif kind in {"key", "id", "parent"}:
            if text.isdigit():
                by_id = self.issues.get(int(text))
                if kind != "key":
                    return int(text)
                if by_id is None:
                    raise JqlError(f"An issue with key '{text}' does not exist for field '{label}'.")
                return by_id.key
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*-\d+", text):
                raise JqlError(f"The issue key '{text}' for field '{label}' is invalid.")
            issue_id = self.keys.get(text.upper())
            if issue_id is None:
                raise JqlError(f"An issue with key '{text}' does not exist for field '{label}'.")
            return text.upper() if kind == "key" else issue_id
        elif kind == "number":
            try:
                return float(text)
            except ValueError:
                raise JqlError(f"The value '{text}' for field '{label}' is invalid: a number is expected.") from None
        elif kind in {"exact", "labels"}:
            return text
        else:
            found = None
        if found is None:
            raise missing
        return found

    def _compile_date(self, attr: str, label: str, kind: str, op: str, values: Sequence[JqlValue],
                      user: User) -> Callable[[dict[str, Any]], bool]:
        zone = ZoneInfo(user.time_zone)
        instants = [self._jql_instant(v, label, user) for v in values]
        if kind == "date":
            targets = {datetime.fromtimestamp(t, zone).date().isoformat() for t in instants}
            return _compare(attr, op, targets)
        return _compare(attr, op, set(instants))

    def _jql_instant(self, value: JqlValue, label: str, user: User) -> float:
        """A JQL date literal as epoch seconds. Literals have no zone: they are the caller's local time."""
        zone = ZoneInfo(user.time_zone)
        now = self.clock.time()
        if value.kind == "func":
            local = datetime.fromtimestamp(now, zone)
            start = local.replace(hour=0, minute=0, second=0, microsecond=0)
            functions = {
                "now": local,
                "startofday": start,
                "endofday": start + timedelta(days=1, milliseconds=-1),
                "startofmonth": start.replace(day=1),
            }
            if value.text not in functions:
                raise JqlError(f"Unable to find JQL function '{value.text}()'.")
            return functions[value.text].timestamp()
        text = value.text.strip()
        if re.fullmatch(r"\d{9,}", text):
            return int(text) / 1000
        period = _PERIOD.match(text)
        if period:
            seconds = sum(int(n) * _PERIOD_SECONDS[u.lower()] for n, u in _PERIOD_PART.findall(period[2]))
            return now - seconds if period[1] == "-" else now + seconds
        for fmt in _DATE_FORMATS:
            try:
                return datetime.strptime(text, fmt).replace(tzinfo=zone).timestamp()
            except ValueError:
                continue
        raise JqlError(f"Date value '{text}' for field '{label}' is invalid. {_DATE_HELP}")
