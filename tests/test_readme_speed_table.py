"""The README's speed table quotes the committed bench logs it cites, cell by cell, and marks in bold exactly
the cells that meet their goal: a re-run whose figures are not copied into the README, or a hand-edited
figure, fails here."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOGS = ROOT / "results" / "bench"

COLUMNS = {  # README column heading -> the log it quotes, and the network the log measures
    "eager, batch 8": ("resnet50_eager_b8_threads.txt", "resnet50"),
    "eager, batch 1": ("resnet50_eager_b1_threads.txt", "resnet50"),
    "`torch.compile`, batch 8": ("resnet50_compiled_b8_threads.txt", "resnet50"),
    "`torch.compile`, batch 1": ("resnet50_compiled_b1_threads.txt", "resnet50"),
    "training step, batch 64": ("resnet18_train_b64_threads.txt", "resnet18"),
    "training step, batch 8": ("resnet18_train_b8_threads.txt", "resnet18"),
}
ROWS = {  # README row -> (the log's label for it, the attention whose goal applies)
    "attnzoo SE": ("{net}_se", "SE"),
    "timm SE (`seresnet*`)": ("timm se{net}", "SE"),
    "attnzoo CBAM": ("{net}_cbam", "CBAM"),
    "timm `CbamModule`": ("timm {net} + CbamModule", "CBAM"),
}


def log_ratios(path: Path) -> list[dict[str, float]]:
    """Each table of a bench log in order (torch's default thread count first, then one thread), as
    ratio by model label."""
    tables: list[dict[str, float]] = []
    for line in path.read_text().splitlines():
        if re.search(r"family: .*, \d+ thread\(s\)$", line):
            tables.append({})
        elif tables and (row := re.match(r"  (\S.*?)\s+[\d.]+\s+([\d.]+)\s+[\d.]+-[\d.]+$", line)):
            tables[-1][row.group(1)] = float(row.group(2))
    return tables


def readme_table() -> tuple[list[str], dict[str, list[str]]]:
    """The speed table's column headings and its rows (label -> cells)."""
    lines = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| | eager")]
    assert len(lines) == 1, "the README has one speed table, whose first heading cell is 'eager'"
    body = (ROOT / "README.md").read_text().split(lines[0], 1)[1].splitlines()[2:]
    rows = {}
    for line in body:
        if not line.startswith("|"):
            break
        label, *cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[label] = cells
    return [cell.strip() for cell in lines[0].strip("|").split("|")][1:], rows


def goals(cell: str) -> dict[str, float]:
    """'SE 1.03, CBAM 1.06' -> {'SE': 1.03, 'CBAM': 1.06}."""
    return {name: float(value) for name, value in re.findall(r"(SE|CBAM) ([\d.]+)", cell)}


HEADINGS, TABLE = readme_table()


def test_the_table_has_the_columns_and_rows_it_is_checked_by():
    assert HEADINGS == list(COLUMNS)
    assert list(TABLE) == [*ROWS, "goal"]


@pytest.mark.parametrize("row", ROWS)
@pytest.mark.parametrize("column", COLUMNS)
def test_each_cell_quotes_its_log_at_both_thread_settings_and_is_bold_where_it_meets_the_goal(column, row):
    log, net = COLUMNS[column]
    label, attention = ROWS[row]
    index = HEADINGS.index(column)
    tables = log_ratios(LOGS / log)
    assert len(tables) == 2, f"{log}: expected a table at torch's default thread count and one at one thread"
    goal = goals(TABLE["goal"][index])[attention]
    quoted = [part.strip() for part in TABLE[row][index].split("/")]
    assert len(quoted) == 2, f"{row}, {column}: expected 'default threads / one thread'"
    for text, table in zip(quoted, tables):
        value = float(text.strip("*"))
        assert value == table[label.format(net=net)], f"{row}, {column}: {text} is not {log}'s figure"
        if row.startswith("attnzoo"):
            assert text.startswith("**") == (value <= goal), f"{row}, {column}: {text} is bold iff <= {goal}"
        else:
            assert not text.startswith("**"), f"{row}, {column}: only attnzoo's cells are marked against the goal"
