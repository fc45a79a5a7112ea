"""Job files, flags and the environment: merged, checked, and never leaking the token."""

from __future__ import annotations

from pathlib import Path

import pytest

from distributor.config import JobConfig, publication_source_id
from distributor.credentials import Credentials
from distributor.errors import ConfigError
from distributor.units import Rate, format_duration, parse_duration

ENV = {"VOUCHERIFY_APP_ID": "app-1", "VOUCHERIFY_APP_TOKEN": "s3cr3t-token"}
BASE = {"segment": "s.csv", "campaign": "camp_1", "rate_limit": "80/min", "output": "out.csv"}


@pytest.mark.parametrize(
    ("text", "rate"),
    [("100/min", Rate(100, 60.0)), ("2000/min", Rate(2000, 60.0)), ("5/s", Rate(5, 1.0)),
     ("100/h", Rate(100, 3600.0)), ("50/2s", Rate(50, 2.0)), ("1.5/s", Rate(3, 2.0)), (" 80 / MIN ", Rate(80, 60.0))],
)
def test_rates_keep_their_period(text: str, rate: Rate) -> None:
    assert Rate.parse(text) == rate


@pytest.mark.parametrize("text", ["100", "fast", "0/min", "100/fortnight", "-5/s"])
def test_bad_rates_say_what_is_expected(text: str) -> None:
    with pytest.raises(ConfigError, match=r"N/s, N/min or N/h|unknown period|positive"):
        Rate.parse(text)


@pytest.mark.parametrize(
    ("word", "seconds"),
    [("s", 1.0), ("sec", 1.0), ("secs", 1.0), ("second", 1.0), ("seconds", 1.0),
     ("m", 60.0), ("min", 60.0), ("mins", 60.0), ("minute", 60.0), ("minutes", 60.0),
     ("h", 3600.0), ("hr", 3600.0), ("hrs", 3600.0), ("hour", 3600.0), ("hours", 3600.0)],
)
def test_rates_and_durations_share_one_vocabulary(word: str, seconds: float) -> None:
    assert Rate.parse(f"100/{word}") == Rate(100, seconds)
    assert Rate.parse(f"100/2{word}") == Rate(100, 2 * seconds)
    assert parse_duration(f"3{word}") == 3 * seconds
    assert parse_duration(f"3 {word.upper()}") == 3 * seconds


def test_a_rate_per_millisecond_is_refused_but_a_duration_in_them_is_fine() -> None:
    with pytest.raises(ConfigError, match="unknown period 'ms'"):
        Rate.parse("5/ms")
    assert parse_duration("250 milliseconds") == pytest.approx(0.25)
    with pytest.raises(ConfigError, match="150ms, 2s, 5min or 1h"):
        parse_duration("3 fortnights")


def test_headroom_leaves_part_of_the_grant_to_the_shop() -> None:
    config = JobConfig.load(None, {**BASE, "rate_limit": "100/min", "headroom": 0.2}, ENV)
    assert config.budget == Rate(80, 60.0)


def test_durations() -> None:
    assert parse_duration("150ms") == pytest.approx(0.15)
    assert parse_duration("2min") == 120.0
    assert parse_duration(3) == 3.0
    assert format_duration(93784) == "1d 2h 3min"
    assert format_duration(12.5) == "12.5s"


def test_flags_beat_the_job_file_and_paths_are_relative_to_it(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    job = jobs / "job.toml"
    job.write_text('segment = "../data/s.csv"\ncampaign = "camp_1"\nrate-limit = "80/min"\noutput = "out/c.csv"\n')

    config = JobConfig.load(job, {"rate_limit": "50/min", "campaign": None}, ENV)

    assert config.segment == (tmp_path / "data" / "s.csv",)
    assert config.output == jobs / "out" / "c.csv"
    assert config.rate_limit == Rate(50, 60.0)
    assert config.campaign == "camp_1"
    assert config.layout.journal == jobs / "out" / "c.journal.sqlite"
    assert config.layout.errors == jobs / "out" / "c.errors.csv"


def test_unknown_keys_in_a_job_file_are_named(tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text('segment = "s.csv"\ncampaing = "camp_1"\n')
    with pytest.raises(ConfigError, match=f"unknown option in {job}: campaing"):
        JobConfig.load(job, {}, ENV)


def test_a_job_file_that_is_not_toml_names_the_file(tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text("segment = \n")
    with pytest.raises(ConfigError, match=f"job file {job} is not valid TOML"):
        JobConfig.load(job, {}, ENV)


@pytest.mark.parametrize(
    ("missing", "message"),
    [("segment", "--segment"), ("campaign", "--campaign"), ("rate_limit", "--rate-limit")],
)
def test_required_options(missing: str, message: str) -> None:
    values = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(ConfigError, match=message):
        JobConfig.load(None, values, ENV)


def test_credentials_come_from_the_environment_only() -> None:
    with pytest.raises(ConfigError, match="VOUCHERIFY_APP_ID and VOUCHERIFY_APP_TOKEN"):
        JobConfig.load(None, BASE, {})
    with pytest.raises(ConfigError, match="VOUCHERIFY_APP_TOKEN is not set"):
        JobConfig.load(None, BASE, {"VOUCHERIFY_APP_ID": "x"})
    # the sandbox needs none
    assert JobConfig.load(None, {**BASE, "api_url": "sandbox"}, {}).credentials is None


def test_the_token_never_shows_in_repr() -> None:
    config = JobConfig.load(None, BASE, ENV)
    assert "s3cr3t-token" not in repr(config)
    assert "s3cr3t-token" not in repr(config.credentials)
    assert "app-1" in repr(config.credentials)
    assert "***" in repr(Credentials("a", "b"))


def test_plain_http_is_refused_except_on_loopback() -> None:
    with pytest.raises(ConfigError, match="unencrypted"):
        JobConfig.load(None, {**BASE, "api_url": "http://api.voucherify.io"}, ENV)
    assert JobConfig.load(None, {**BASE, "api_url": "http://127.0.0.1:8080"}, ENV).api_url.startswith("http://")


@pytest.mark.parametrize("name", ["identity", "Email", "", "1code", "x" * 121])
def test_property_names_clevertap_would_refuse_or_misread(name: str) -> None:
    with pytest.raises(ConfigError, match="property"):
        JobConfig.load(None, {**BASE, "property": name}, ENV)


def test_publication_source_ids_are_deterministic_per_distribution_campaign_and_customer() -> None:
    a = publication_source_id("camp_1", "camp_1", "000123")
    assert a == publication_source_id("camp_1", "camp_1", "000123")
    assert a != publication_source_id("camp_1", "camp_1", "123")
    assert a != publication_source_id("spring-2027", "camp_1", "000123")
    # one distribution name for two campaigns: two keys (Voucherify would otherwise answer duplicate_source_id)
    assert a != publication_source_id("camp_1", "camp_2", "000123")
    assert a.startswith("camp-1-") and len(a) <= 80
    # the separator keeps ("ab", "c") and ("a", "bc") apart
    assert publication_source_id("ab", "x", "c").split("-")[-1] != publication_source_id("a", "x", "bc").split("-")[-1]
    assert publication_source_id("d", "ab", "c").split("-")[-1] != publication_source_id("d", "a", "bc").split("-")[-1]
