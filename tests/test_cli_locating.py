"""How ``status``, ``export`` (also ``--calls``) and ``push`` find a distribution's files from a job file or the
flags, without a run's configuration: what a broken job file says, and that no placeholder ever names a file."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from distributor.cli import main

COMMANDS = (("status",), ("export",), ("export", "--calls"), ("push", "--clevertap", "sandbox"))


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env={}, catch_exceptions=False)
    return result.exit_code, result.stderr


def job_file(tmp_path: Path, text: str) -> Path:
    job = tmp_path / "job.toml"
    job.write_text(text, encoding="utf-8")
    return job


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_job_file_that_cannot_be_read_is_named_by_every_command(tmp_path: Path, command: tuple[str, ...]) -> None:
    missing = tmp_path / "missing.toml"
    broken = job_file(tmp_path, 'campaign = "c\n')

    assert invoke(*command, str(missing)) == (2, f"distributor: job file {missing} does not exist\n")
    code, stderr = invoke(*command, str(broken))
    assert code == 2
    assert stderr.startswith(f"distributor: job file {broken} is not valid TOML: ") and stderr.count("\n") == 1


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('campaing = "c"\n', "unknown option in {job}: campaing"),
        ('campaign = "c"\nsandbox = 3\n', "[sandbox] in {job} must be a table"),
        ('campaign = "c"\n[foo]\nx = 1\n', "unknown table [foo] in {job}"),
        ('campaign = "c"\n[sandbox]\nerorr_rate = 0.5\n', "unknown option in [sandbox] of {job}: erorr_rate"),
        ('campaign = "c"\noutput = "o.txt"\n', "output {dir}/o.txt must end in .csv (CleverTap's upload takes CSV)"),
        ('campaign = "c"\noutput = "o.csv"\nstate = "o.csv"\n', "state and output point at the same file"),
        ('campaign = ""\n', "campaign is missing: give --campaign or set campaign in the job file"),
        ('campaign = "c"\ndistribution = " "\n', "distribution is empty: leave it out to use the campaign, or give a name"),
        (
            'campaign = "c"\nproperty = "Identity"\n',
            "property 'Identity' would overwrite a CleverTap identifier; choose another name",
        ),
        (
            'campaign = "c"\nclevertap_batch = 5000\n',
            "clevertap_batch 5000 must be a whole number from 1 to 1000 (CleverTap's limit per upload)",
        ),
        (
            'campaign = "c"\nclevertap = "zz9"\n',
            "clevertap 'zz9' is neither a region (eu1, in1, sg1, us1, aps3, mec1), a URL, nor 'sandbox'",
        ),
    ],
    ids=["unknown", "sandbox-not-table", "unknown-table", "sandbox-typo", "not-csv", "same-file", "no-campaign",
         "empty-distribution", "identifier-property", "batch", "clevertap-region"],
)
def test_a_job_file_that_cannot_name_the_files_exits_2_with_its_one_line(
    tmp_path: Path, command: tuple[str, ...], text: str, message: str
) -> None:
    job = job_file(tmp_path, text)
    if "zz9" in text and command[0] == "push":
        command = ("push",)  # --clevertap on the command line would override the job file's
    assert invoke(*command, str(job)) == (2, f"distributor: {message.format(job=job, dir=tmp_path)}\n")


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_the_default_output_is_found_beside_the_job_file(tmp_path: Path, command: tuple[str, ...]) -> None:
    job = job_file(tmp_path, 'campaign = "Spring Sale"\n')
    (tmp_path / "d").mkdir()
    by_distribution = job_file(tmp_path / "d", 'distribution = "x"\n')

    code, stderr = invoke(*command, str(job))
    journal = tmp_path / "spring-sale-codes.journal.sqlite"
    assert code == 2 and str(journal) in stderr, stderr
    code, stderr = invoke(*command, str(by_distribution))
    assert code == 2 and str(tmp_path / "d" / "x-codes.journal.sqlite") in stderr, stderr


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_job_file_that_names_no_distribution_is_refused_not_read_as_a_placeholder(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    job = job_file(tmp_path, 'property = "p"\n')
    assert invoke(*command, str(job)) == (
        2,
        f"distributor: which distribution? {job} names no output, state, campaign or distribution\n",
    )


@pytest.mark.parametrize("command", COMMANDS[1:], ids=" ".join)
def test_the_job_files_state_is_the_journal_that_does_not_name_the_output(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    job = job_file(tmp_path, 'state = "x.db"\n')
    assert invoke(*command, str(job)) == (
        2,
        f"distributor: give --output: the CSV to write (the journal {tmp_path / 'x.db'} does not say)\n",
    )


def test_the_job_files_state_is_read_where_it_is(tmp_path: Path) -> None:
    job = job_file(tmp_path, 'state = "x.db"\n')
    assert invoke("status", str(job)) == (
        2,
        f"distributor: no journal at {tmp_path / 'x.db'}: this distribution has not run yet (or its journal is "
        "elsewhere: give --state)\n",
    )


def test_a_clevertap_stand_in_table_that_is_not_a_table_is_named_whole(tmp_path: Path) -> None:
    job = job_file(tmp_path, 'segment = "s.csv"\ncampaign = "c"\napi_url = "sandbox"\nrate_limit = "10/min"\n'
                             "[sandbox]\nclevertap = 3\n")
    assert invoke("run", str(job)) == (2, f"distributor: [sandbox.clevertap] of {job} must be a table\n")


def test_a_wrong_sandbox_value_exits_2_before_the_segment_is_read(tmp_path: Path) -> None:
    job = job_file(tmp_path, 'segment = "missing.csv"\ncampaign = "c"\napi_url = "sandbox"\nrate_limit = "10/min"\n'
                             '[sandbox]\nlatency = "soon"\n')
    assert invoke("run", str(job)) == (
        2,
        "distributor: duration 'soon' is not of the form 150ms, 2s, 5min or 1h (or sec, minutes, hr, hours, …)\n",
    )
