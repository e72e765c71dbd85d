"""The rows of the tables page as HTML, built in Python: every value escaped by format_html.

A hundred rows of a dozen cells each cost Django's template engine about half of the page's
time (bench/pages.py, profiled: 1,158 variable lookups a page); format_html builds the same
markup in a fraction of it.
"""

from collections.abc import Sequence

from django.template.defaultfilters import filesizeformat, truncatechars
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from sync.web.pages.freshness import ago
from sync.web.pages.listing import ListedTable, TableFilters


def rows_html(
    rows: Sequence[ListedTable], links: dict[str, str], filters: TableFilters
) -> SafeString:
    """Return the <tr> of each listed relation, in order."""
    return mark_safe("\n".join(row_html(row, links, filters) for row in rows))  # noqa: S308


def row_html(table: ListedTable, links: dict[str, str], filters: TableFilters) -> SafeString:
    facts = table.facts
    cells = [
        format_html('<th scope="row">{}{}{}</th>', name_html(table, links),
                    partitions_html(table, links), parent_html(table, links, filters)),
        format_html('<td><a href="{}{}">{}</a></td>', links["schema"], table.schema_id,
                    table.schema_name),
        format_html("<td>{}</td>", table.kind_label),
        number_cell("" if facts is None or facts.rows is None else str(facts.rows)),
        number_cell("" if facts is None or facts.size is None else filesizeformat(facts.size)),
        number_cell("" if facts is None else str(facts.columns)),
        format_html('<td class="comment">{}</td>',
                    truncatechars(facts.comment, 120) if facts and facts.comment else ""),
        format_html('<td class="oid">{}</td>', table.oid),
    ]  # fmt: skip
    if filters.dropped:
        cells.append(dropped_html(table))
    dropped = mark_safe(' class="dropped"') if table.dropped_at else ""
    return format_html(
        '<tr id="oid-{}"{}>\n    {}\n  </tr>', table.oid, dropped,
        format_html_join("\n    ", "{}", ((cell,) for cell in cells)),
    )  # fmt: skip


def number_cell(text: str) -> SafeString:
    return format_html('<td class="num">{}</td>', text)


def name_html(table: ListedTable, links: dict[str, str]) -> SafeString:
    if table.dropped_at:
        return format_html("{}", table.name)
    return format_html('<a href="{}{}/">{}</a>', links["table"], table.id, table.name)


def partitions_html(table: ListedTable, links: dict[str, str]) -> SafeString:
    """Say how many partitions the table has, linking to their list; nothing if none."""
    if not table.partitions:
        return mark_safe("")
    count = f"{table.partitions} partition{'s' if table.partitions != 1 else ''}"
    if table.partitions_in_all != table.partitions:
        count += f", {table.partitions_in_all} in all"
    return format_html(' <a class="partitions" href="{}{}">{}</a>', links["partitions"],
                       table.id, count)  # fmt: skip


def parent_html(table: ListedTable, links: dict[str, str], filters: TableFilters) -> SafeString:
    if not table.parent_id or filters.parent is not None:
        return mark_safe("")
    return format_html(' <span class="parent">partition of <a href="{}{}/">{}</a></span>',
                       links["table"], table.parent_id, table.parent_name)  # fmt: skip


def dropped_html(table: ListedTable) -> SafeString:
    if table.dropped_at is None:
        return mark_safe("<td></td>")
    return format_html('<td><time datetime="{}">{}</time></td>', table.dropped_at.isoformat(),
                       ago(table.dropped_at))  # fmt: skip
