"""Several parts, one segment: ``--segment`` repeated, a folder or a glob reads every part; rows are named
``file:row``; an identity in two parts is published once; a data file given as the job file gets a hint."""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SANDBOX_ENV, held_codes, make_config, read_codes, run

from distributor.cli import main
from distributor.errors import EXIT_OK, EXIT_UNUSABLE_INPUT, InputError
from distributor.journal import Journal
from distributor.segment import open_segment


def write_part(path: Path, identities: list[str], *, column: str = "identity") -> Path:
    text = f"{column},Email\r\n" + "".join(f"{value},u@example.com\r\n" for value in identities)
    path.write_bytes(gzip.compress(text.encode()) if path.suffix == ".gz" else text.encode())
    return path


@pytest.fixture
def parts(tmp_path: Path) -> list[Path]:
    exports = tmp_path / "exports"
    exports.mkdir()
    return [
        write_part(exports / "part-00.csv.gz", ["a", "b", ""]),
        write_part(exports / "part-01.csv.gz", ["c", "a", "d"]),  # "a" again: in the first part already
        write_part(exports / "part-02.csv", ["e"]),
    ]


def read(segment_paths: object) -> list[tuple[int | str, str]]:
    return [(row.number, row.identity) for batch in open_segment(segment_paths).batches(2) for row in batch]  # type: ignore[arg-type]


EXPECTED = [
    ("part-00.csv.gz:2", "a"), ("part-00.csv.gz:3", "b"), ("part-00.csv.gz:4", ""),
    ("part-01.csv.gz:2", "c"), ("part-01.csv.gz:3", "a"), ("part-01.csv.gz:4", "d"),
    ("part-02.csv:2", "e"),
]


def test_parts_given_one_by_one_a_folder_or_a_glob_are_one_segment(parts: list[Path]) -> None:
    folder = parts[0].parent
    assert read(parts) == EXPECTED
    assert read([folder]) == EXPECTED
    assert read([str(folder / "part-*")]) == EXPECTED  # expanded by us, sorted
    assert read([str(folder / "part-0[12]*"), parts[0]]) == EXPECTED[3:] + EXPECTED[:3]  # in the order given
    segment = open_segment(parts)
    assert segment.name == " + ".join(str(p) for p in parts)
    assert segment.describe().startswith("3 parts read as one segment (CSV, gzip-compressed CSV): ")


def test_a_part_without_the_identity_column_is_named(parts: list[Path]) -> None:
    odd = write_part(parts[0].parent / "part-03.csv", ["f"], column="customer")
    with pytest.raises(InputError, match=rf"{odd}: no column 'identity', the identity column of {parts[0]}; "
                                         r"the columns are 'customer', 'Email'; all parts of a segment share"):
        open_segment([*parts, odd])


def test_parts_with_the_same_name_are_named_by_their_path(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one, two = write_part(tmp_path / "a" / "s.csv", ["x"]), write_part(tmp_path / "b" / "s.csv", ["y"])
    assert read([one, two]) == [(f"{one}:2", "x"), (f"{two}:2", "y")]


def test_a_glob_matching_nothing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"segment pattern '.*part-\*.csv.gz' matches no file"):
        open_segment([str(tmp_path / "part-*.csv.gz")])


def test_a_run_over_several_parts_serves_all_of_them_once(tmp_path: Path, sandbox, parts: list[Path]) -> None:
    server = sandbox()
    config = make_config(tmp_path, server, parts)  # type: ignore[arg-type]

    result = run(config)

    assert result.exit_code == EXIT_OK, result.message
    _, codes = read_codes(config.output)
    assert list(codes) == ["a", "b", "c", "d", "e"]  # every part; "a" once
    assert {identity: {code} for identity, code in codes.items()} == held_codes(server)
    with config.layout.skipped.open(newline="", encoding="utf-8") as handle:
        report = list(csv.reader(handle))[1:]
    assert [(r[0], r[1], r[2]) for r in report] == [("part-00.csv.gz:4", "", "empty"), ("part-01.csv.gz:3", "a", "duplicate")]
    assert report[1][3] == "appears earlier in the segment; published once (first at row part-00.csv.gz:2)"
    with Journal.open(config.layout.journal, readonly=True) as journal:
        assert journal.runs()[-1]["segment"] == " + ".join(str(p) for p in parts)  # what was read


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "distributor", *args], env={"PATH": "/usr/bin:/bin", **SANDBOX_ENV},
        capture_output=True, text=True, cwd=cwd, timeout=120, check=False,
    )


@pytest.mark.slow
def test_repeated_segment_options_and_a_quoted_glob_on_the_command_line(tmp_path: Path, parts: list[Path]) -> None:
    """Once, only the last --segment was read (exit 0, half the members served)."""
    common = ["--campaign", "reactivation-20", "--rate-limit", "6000/min", "--api-url", "sandbox"]
    done = cli("run", "--segment", str(parts[0]), "--segment", str(parts[1]), "--segment", str(parts[2]), *common,
               "--output", str(tmp_path / "one" / "codes.csv"))
    assert done.returncode == EXIT_OK, done.stderr
    _, codes = read_codes(tmp_path / "one" / "codes.csv")
    assert sorted(codes) == ["a", "b", "c", "d", "e"]
    done = cli("plan", "--segment", str(parts[0].parent / "part-*"), *common, "--output", str(tmp_path / "two" / "codes.csv"))
    assert done.returncode == EXIT_OK, done.stderr
    assert "3 parts read as one segment" in done.stdout and "5" in done.stdout


@pytest.mark.slow
def test_a_job_file_may_list_several_parts_relative_to_itself(tmp_path: Path, parts: list[Path]) -> None:
    job = tmp_path / "job.toml"
    job.write_text(
        'segment = ["exports/part-00.csv.gz", "exports/part-0[12]*"]\ncampaign = "reactivation-20"\n'
        'rate-limit = "6000/min"\napi-url = "sandbox"\noutput = "out/codes.csv"\n'
    )
    done = cli("run", str(job), cwd=parts[0].parent)
    assert done.returncode == EXIT_OK, done.stderr
    summary = json.loads((tmp_path / "out" / "codes.summary.json").read_text())
    assert summary["members"]["in_segment"] == 5
    assert summary["skipped"] == {"total": 2, "by_reason": {"empty": 1, "duplicate": 1}}
    export = cli("export", str(job))
    assert export.returncode == 0, export.stderr
    status = cli("status", str(job))
    assert status.returncode == 0 and "part-00.csv.gz + " in status.stdout, status.stderr


def one_line(args: list[str]) -> str:
    result = CliRunner().invoke(main, args, env=SANDBOX_ENV, catch_exceptions=False)
    assert result.exit_code == EXIT_UNUSABLE_INPUT, result.output
    assert "Traceback" not in result.output and len(result.stderr.splitlines()) == 1, result.stderr
    return result.stderr.strip()


def test_a_segment_export_given_as_the_job_file_gets_a_hint(tmp_path: Path, parts: list[Path]) -> None:
    """Once: "is not valid TOML" (run segment.csv) or "unexpected extra argument" (a shell glob)."""
    plain = parts[2]
    assert one_line(["run", str(plain)]) == (
        f"distributor: {plain} looks like a segment export, not a job file: use --segment {plain}"
    )
    renamed = tmp_path / "export-without-suffix"
    renamed.write_bytes(parts[0].read_bytes())  # told by its gzip bytes
    assert "looks like a segment export, not a job file" in one_line(["plan", str(renamed)])
    job = tmp_path / "job.toml"
    job.write_text('campaign = "reactivation-20"\n')
    line = one_line(["run", str(job), *map(str, parts)])  # what `run job.toml exports/part-*` becomes
    assert line.startswith(f"distributor: {parts[0]}, {parts[1]}, {parts[2]} look like segment exports, not a job file: "
                           f"use --segment {parts[0]} --segment {parts[1]} --segment {parts[2]} (quote a glob")


def test_two_job_files_are_refused(tmp_path: Path) -> None:
    one, two = tmp_path / "a.toml", tmp_path / "b.toml"
    one.write_text("")
    two.write_text("")
    assert one_line(["run", str(one), str(two)]) == f"distributor: one job file at most, but 2 were given: {one}, {two}"


def test_status_names_a_refused_member_by_its_part_and_row(tmp_path: Path, sandbox, parts: list[Path]) -> None:
    """A member of a several-part segment is at ``file:row``: status once took that for a number and crashed."""
    server = sandbox(refuse_customers={"d": "voucher_cannot_be_published"})
    config = make_config(tmp_path, server, parts)  # type: ignore[arg-type]
    assert run(config).exit_code == 1

    status = CliRunner().invoke(main, ["status", "--state", str(config.layout.journal), "--json"])

    assert status.exit_code == 0, status.output
    [error] = json.loads(status.output)["errors"]
    assert (error["identity"], error["row"], error["key"]) == ("d", "part-01.csv.gz:4", "voucher_cannot_be_published")
    text = CliRunner().invoke(main, ["status", "--state", str(config.layout.journal)])
    assert text.exit_code == 0 and "d (row part-01.csv.gz:4): 400" in text.output, text.output
