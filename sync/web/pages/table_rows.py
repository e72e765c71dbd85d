"""The rows of the tables page as HTML, built in Python: every text escaped on the way in.

A hundred rows of a dozen cells each cost Django's template engine about half of the page's
time (bench/pages.py, profiled: 1,158 variable lookups a page), and format_html, escaping each
argument through Django's lazy-aware machinery, still most of that; plain strings with
html.escape on every text (names, comments, links) and integers as they are build the same
markup in a fraction of it.
"""

from collections.abc import Sequence
from html import escape

from django.template.defaultfilters import filesizeformat, truncatechars
from django.utils.safestring import SafeString, mark_safe

from sync.web.pages.freshness import ago
from sync.web.pages.listing import ListedTable, TableFilters


def rows_html(
    rows: Sequence[ListedTable], links: dict[str, str], filters: TableFilters
) -> SafeString:
    """Return the <tr> of each listed relation, in order."""
    safe_links = {key: escape(value) for key, value in links.items()}
    html = "\n".join(row_html(row, safe_links, filters) for row in rows)
    return mark_safe(html)  # noqa: S308  (every text in it went through escape)


def row_html(table: ListedTable, links: dict[str, str], filters: TableFilters) -> str:
    """Return one row; `links` are escaped already, ids and oids are integers."""
    facts = table.facts
    rows = size = columns = comment = ""
    if facts is not None:
        rows = "" if facts.rows is None else str(int(facts.rows))
        size = "" if facts.size is None else escape(str(filesizeformat(facts.size)))
        columns = str(int(facts.columns))
        comment = escape(truncatechars(facts.comment, 120)) if facts.comment else ""
    dropped = ' class="dropped"' if table.dropped_at else ""
    cells = [
        f'<th scope="row">{name_html(table, links)}{partitions_html(table, links)}'
        f"{parent_html(table, links, filters)}</th>",
        f'<td><a href="{links["schema"]}{int(table.schema_id)}">'
        f"{escape(table.schema_name)}</a></td>",
        f'<td class="kind">{escape(table.kind_label)}</td>',
        f'<td class="num">{rows}</td>',
        f'<td class="num">{size}</td>',
        f'<td class="num columns">{columns}</td>',
        f'<td class="comment">{comment}</td>',
        f'<td class="oid">{int(table.oid)}</td>',
        changed_html(table),
    ]
    if filters.dropped:
        cells.append(dropped_html(table))
    inner = "\n    ".join(cells)
    return f'<tr id="oid-{int(table.oid)}"{dropped}>\n    {inner}\n  </tr>'


def name_html(table: ListedTable, links: dict[str, str]) -> str:
    if table.dropped_at:
        return escape(table.name)
    return f'<a href="{links["table"]}{int(table.id)}/">{escape(table.name)}</a>'


def partitions_html(table: ListedTable, links: dict[str, str]) -> str:
    """Say how many partitions the table has, linking to their list; nothing if none."""
    if not table.partitions:
        return ""
    count = f"{int(table.partitions)} partition{'s' if table.partitions != 1 else ''}"
    if table.partitions_in_all != table.partitions:
        count += f", {int(table.partitions_in_all)} in all"
    return f' <a class="partitions" href="{links["partitions"]}{int(table.id)}">{count}</a>'


def parent_html(table: ListedTable, links: dict[str, str], filters: TableFilters) -> str:
    if not table.parent_id or filters.parent is not None:
        return ""
    return (
        f' <span class="parent">partition of <a href="{links["table"]}{int(table.parent_id)}/">'
        f"{escape(table.parent_name or '')}</a></span>"
    )


def changed_html(table: ListedTable) -> str:
    """Say when the table last changed and by whom ("unknown" where no watch said)."""
    if table.changed is None:
        return '<td class="changed"></td>'
    moment = table.changed.occurred_at
    when = f'<time datetime="{escape(moment.isoformat())}">{escape(ago(moment))}</time>'
    return f'<td class="changed">{when} by {escape(table.changed.role or "unknown")}</td>'


def dropped_html(table: ListedTable) -> str:
    if table.dropped_at is None:
        return "<td></td>"
    moment = escape(table.dropped_at.isoformat())
    return f'<td><time datetime="{moment}">{escape(ago(table.dropped_at))}</time></td>'
