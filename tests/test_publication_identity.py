"""The identity of a code: the publication key binds campaign, distribution and customer, and every answer —
fresh, replayed or looked up — is checked for customer and campaign before its code is saved.

Runs against the loopback sandbox in ``strict_source_id`` mode (any reuse of a key is ``400 duplicate_source_id``,
and the look-up returns whatever publication holds the key, as Voucherify's does), and behind the scripted server
of ``misbehaving.py`` for answers no honest server gives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from conftest import (
    SANDBOX_ENV,
    held_codes,
    make_config,
    read_codes,
    run,
    write_segment,
)
from misbehaving import MisbehavingServer, reply

from distributor.config import Credentials, publication_source_id_v1
from distributor.errors import EXIT_MEMBER_FAILURES, EXIT_OK
from distributor.journal import Journal
from distributor.voucherify import VoucherifyClient

MEMBERS = [f"m-{i:02d}" for i in range(12)]
KEYS = Credentials(SANDBOX_ENV["VOUCHERIFY_APP_ID"], SANDBOX_ENV["VOUCHERIFY_APP_TOKEN"])


def test_one_distribution_name_for_two_campaigns_gives_each_campaign_its_own_codes(tmp_path: Path, sandbox) -> None:
    server = sandbox(strict_source_id=True)
    segment = write_segment(tmp_path / "segment.csv", MEMBERS)
    spring_a = make_config(tmp_path, server, segment, distribution="spring", output=tmp_path / "a" / "codes.csv")
    spring_b = make_config(tmp_path, server, segment, distribution="spring", campaign="gift-card-50",
                           output=tmp_path / "b" / "codes.csv")

    assert run(spring_a).exit_code == EXIT_OK
    result = run(spring_b)

    assert result.exit_code == EXIT_OK, result.message
    _, codes_a = read_codes(spring_a.output)
    _, codes_b = read_codes(spring_b.output)
    assert {identity: {code} for identity, code in codes_b.items()} == held_codes(server, "gift-card-50")
    assert all(code.startswith("GIFT-") for code in codes_b.values())
    assert not set(codes_a.values()) & set(codes_b.values())
    assert {identity: {code} for identity, code in codes_a.items()} == held_codes(server, "reactivation-20")


def test_a_looked_up_publication_of_another_campaign_is_never_saved(tmp_path: Path, sandbox) -> None:
    """A journal from before keys bound the campaign: ``m-00`` was called for campaign B under the old key, which
    campaign A's distribution of the same name had already used.  Voucherify answers ``duplicate_source_id`` and
    its look-up returns A's publication: that code must not become ``m-00``'s B code."""
    server = sandbox(strict_source_id=True)
    old_key = publication_source_id_v1("spring", "m-00")
    a_code = _publish(server, "camp_demo_reactivation", "m-00", old_key)

    config = make_config(tmp_path, server, write_segment(tmp_path / "segment.csv", ["m-00", "m-01"]),
                         distribution="spring", campaign="gift-card-50")
    with Journal.open(config.layout.journal) as journal:
        run_id = journal.start_run(str(config.segment))
        journal.load(run_id, [(1, 2, "m-00"), (2, 3, "m-01")])
        journal.set_meta(key="identity", property=config.property_name, distribution="spring",
                         campaign=config.campaign, campaign_id="camp_demo_gift", join_once="0")
        member = next(m for m in journal.work(run_id, after_seq=0, limit=2) if m.identity == "m-00")
        journal.log_call(run_id, "publish", member.id, source_id=old_key)  # its answer was lost

    result = run(config)

    assert result.exit_code == EXIT_MEMBER_FAILURES
    _, codes = read_codes(config.output)
    assert "m-00" not in codes and a_code not in codes.values()
    assert codes["m-01"].startswith("GIFT-")
    errors = config.layout.errors.read_text(encoding="utf-8")
    assert "campaign_mismatch" in errors and "reactivation-20" in errors
    with Journal.open(config.layout.journal, readonly=True) as journal:
        row = journal.member("m-00")
        assert row["state"] == "failed" and row["code"] is None and row["source_id"] == old_key


def test_a_fresh_answer_holding_another_campaigns_code_is_never_saved(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    foreign = {
        "id": "pub_x", "object": "publication", "source_id": "whatever", "tracking_id": "m-05", "result": "SUCCESS",
        "customer": {"source_id": "m-05"},
        "voucher": {"code": "OTHER-1", "campaign": "someone-elses", "campaign_id": "camp_other"},
    }
    with MisbehavingServer(upstream=server.url) as front:
        front.when(lambda seen: seen.method == "POST" and '"m-05"' in seen.text, reply(200, foreign))
        config = make_config(tmp_path, None, write_segment(tmp_path / "segment.csv", MEMBERS), api_url=front.url)
        result = run(config)

    assert result.exit_code == EXIT_MEMBER_FAILURES
    _, codes = read_codes(config.output)
    assert "m-05" not in codes and "OTHER-1" not in codes.values()
    assert len(codes) == len(MEMBERS) - 1
    assert "campaign_mismatch" in config.layout.errors.read_text(encoding="utf-8")


def test_a_called_members_key_survives_a_change_of_the_campaigns_resolution(tmp_path: Path, sandbox) -> None:
    """The first run could not read the campaign (its key used the configured name); its answer was lost.  A
    later run that resolves the id keeps the key the member was called with, and gets the code committed."""
    server = sandbox()
    config = make_config(tmp_path, server, write_segment(tmp_path / "segment.csv", ["m-00"]))
    first_key = "reactivation-20-first-key-of-m-00"
    committed = _publish(server, "reactivation-20", "m-00", first_key)
    with Journal.open(config.layout.journal) as journal:
        run_id = journal.start_run(str(config.segment))
        journal.load(run_id, [(1, 2, "m-00")])
        journal.set_meta(key="identity", property=config.property_name)
        member = journal.work(run_id, after_seq=0, limit=1)[0]
        journal.log_call(run_id, "publish", member.id, source_id=first_key)

    result = run(config)

    assert result.exit_code == EXIT_OK, result.message
    _, codes = read_codes(config.output)
    assert codes == {"m-00": committed}
    assert held_codes(server)["m-00"] == {committed}


def _publish(server: Any, campaign: str, identity: str, source_id: str) -> str:
    async def main() -> str:
        async with VoucherifyClient(server.url, KEYS) as client:
            publication = await client.publish(campaign=campaign, customer_source_id=identity, source_id=source_id)
            return publication.code

    return anyio.run(main, backend="asyncio")


def test_a_mismatch_in_a_several_part_segment_is_logged_with_its_file_and_row(
    tmp_path: Path, sandbox, capsys, caplog
) -> None:
    """Rows of a several-part segment are ``file:row``: the mismatch warning once formatted them as a number (a
    logging error on stderr instead of the warning)."""
    server = sandbox()
    foreign = {
        "id": "pub_x", "object": "publication", "source_id": "whatever", "tracking_id": "m-05", "result": "SUCCESS",
        "customer": {"source_id": "m-05"},
        "voucher": {"code": "OTHER-1", "campaign": "someone-elses", "campaign_id": "camp_other"},
    }
    parts = [write_segment(tmp_path / "a.csv", MEMBERS[:6]), write_segment(tmp_path / "b.csv", MEMBERS[6:])]
    with MisbehavingServer(upstream=server.url) as front:
        front.when(lambda seen: seen.method == "POST" and '"m-05"' in seen.text, reply(200, foreign))
        result = run(make_config(tmp_path, None, parts, api_url=front.url))

    assert result.exit_code == EXIT_MEMBER_FAILURES
    assert "Logging error" not in capsys.readouterr().err
    assert any("member at row a.csv:7" in record.getMessage() for record in caplog.records)
