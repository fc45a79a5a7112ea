"""What the commands print: the plan, the status, a run's summary, verify's cost — plain text, one fact a line."""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING, Any

from ..units import format_duration

if TYPE_CHECKING:
    from ..export import Exported
    from ..planning import Plan
    from ..run.summary import LeaversFigures, Summary
    from ..status import Status


def render_audit_cost(cost: Any) -> str:
    """verify's figures before the first call: the journal, what a full audit costs, what this check costs."""
    chosen = (
        f"a random sample of {cost.checked:,} (--seed {cost.seed} checks the same members)"
        if cost.sample is not None
        else f"all {cost.checked:,}"
    )
    return "\n".join(
        [
            f"verify distribution {cost.distribution} · campaign {cost.campaign} · journal {cost.journal}",
            (
                f"  journal       {cost.holding_code:,} members hold a code, {cost.sent_without_code:,} were sent a "
                "publication without one"
            ),
            f"  full audit    {cost.full_audit_calls:,} calls, about {format_duration(cost.full_audit_seconds)} "
            f"at {cost.budget}",
            f"  this check    {chosen}: {cost.checked:,} calls, about {format_duration(cost.seconds)}",
        ]
    )


def delta_line(exported: Exported) -> str:
    if "delta" not in exported.files:
        return f"  delta     none: run {exported.delta_run} published no code"
    return (
        f"  delta     {exported.files['delta']} ({exported.new_codes} codes published after run "
        f"{exported.delta_since_run}, through run {exported.delta_run})"
    )


# ---------------------------------------------------------------------- rendering
def render_plan(plan: Plan) -> str:
    """The plan as a short report: the segment, the journal, the campaign, the cost, then findings and verdict."""
    invalid = sum(plan.invalid.values())
    reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(plan.invalid.items()))
    lines = [
        f"plan for distribution {plan.distribution} · campaign {plan.campaign}",
        f"  segment         {plan.segment_description}",
        f"  rows            {plan.rows:,}: {plan.members:,} members, {invalid:,} invalid"
        + (f" ({reasons})" if reasons else "")
        + f", {plan.duplicates:,} duplicates",
        f"  journal         {plan.journal}" + ("" if plan.journal_exists else " (none yet: the first run)"),
        f"  already served  {plan.already_served:,}",
        f"  failed before   {plan.failed_before:,}"
        + (" (retried: --retry-failed)" if plan.retry_failed and plan.failed_before else ""),
        f"  to serve        {plan.to_serve:,}  ({plan.new:,} new, {plan.unfinished:,} left unfinished by an earlier run"
        + (f", {plan.failed_before:,} failed before" if plan.retry_failed and plan.failed_before else "")
        + ")",
        f"  left segment    {plan.left_segment:,}",
    ]
    if plan.deliver_to == "leavers":
        baseline = f"run {plan.watch_baseline}'s segment" if plan.watch_baseline else "none yet (this run records it)"
        lines.append(
            f"  leavers         {plan.leaving:,} left the watch list ({baseline}), {plan.owed_before:,} "
            "recorded earlier still without a code"
        )
    campaign = plan.campaign_checked
    if campaign is not None:
        traits = [t for t in (campaign.campaign_type, campaign.type) if t]
        traits.append("active" if campaign.active is not False else "INACTIVE")
        if campaign.join_once:
            traits.append("join-once")
        if campaign.type == "STATIC" and campaign.vouchers_count is not None:
            traits.append(f"{campaign.vouchers_count:,} codes")
        traits.append(f"expires {campaign.expiration_date}" if campaign.expiration_date else "no expiry")
        lines.append(f"  campaign        {campaign.name} ({campaign.id}): {', '.join(traits)}; keys accepted")
    else:
        lines.append("  campaign        not checked")
    if plan.to_serve:
        share = f"{100 * plan.retry_share:.1f} % retries and look-ups" + (
            " as in this journal's history" if plan.retry_share_source == "journal" else " assumed"
        )
        lines.append(f"  calls           about {plan.calls_expected:,} (at least {plan.calls_minimum:,}; {share})")
        finish = ""
        if plan.seconds_at_budget >= 3600:
            from datetime import datetime, timedelta

            end = datetime.now(UTC) + timedelta(seconds=plan.seconds_at_budget)
            finish = f", until about {end:%Y-%m-%d %H:%M} UTC if started now"
        pace = (
            f"{plan.budget} ({plan.rate_limit} less {100 * plan.headroom:g} % headroom)"
            if plan.headroom
            else plan.budget
        )
        lines.append(f"  time            about {format_duration(plan.seconds_at_budget)} at {pace}{finish}")
        if plan.cycle_quota is not None:
            lines.append(
                f"  quota           {plan.calls_expected:,} of the {plan.cycle_left:,} calls left in the billing cycle"
            )
    for finding in plan.problems + plan.warnings + plan.notes:
        lines.append(f"{finding.level}: {finding.message}")
    if plan.problems:
        lines.append(f"exit 3: run would fail: {plan.problems[0].message}")
    elif plan.to_serve:
        lines.append(
            f"exit 0: run would publish {plan.to_serve:,} codes in about {format_duration(plan.seconds_at_budget)}"
        )
    elif plan.deliver_to == "leavers":
        lines.append("exit 0: run would publish nothing" + ("" if plan.watch_baseline else ": it records the baseline"))
    else:
        lines.append("exit 0: run would publish nothing: every valid member already holds a code")
    return "\n".join(lines)


def render_status(report: Status) -> str:
    """The status as a short report: the run, the members by state, the pace, the latest errors, earlier runs."""
    lines = [
        f"distribution {report.distribution or '-'} · campaign {report.campaign or '-'} · journal {report.journal}"
    ]
    run = report.run
    if run is None:
        lines.append("no run yet")
        return "\n".join(lines)
    if report.state == "running":
        lines.append(f"run {run.id}: in progress ({report.holder}); started {run.started_at}")
    elif report.state == "died":
        lines.append(
            f"run {run.id}: died: started {run.started_at} and never recorded its end (killed, crashed or rebooted); "
            "run the same command again to resume"
        )
    else:
        lines.append(f"run {run.id}: {report.state} {run.ended_at}: exit {run.exit_code} {run.reason or ''}".rstrip())
        if run.message:
            lines.append(f"  {run.message}")
    members = report.members
    total = sum(members.values())
    done_share = f" ({100 * members['done'] / total:.1f} %)" if total else ""
    lines += [
        f"  segment       {run.segment or '-'}: {total:,} members",
        f"  done          {members['done']:,}{done_share}",
        f"  in flight     {members['sending']:,}"
        + (
            ""
            if report.state == "running" or not members["sending"]
            else " (sent before the run ended: resent with the same source_id on resume)"
        ),
        f"  pending       {members['pending']:,}",
        f"  failed        {members['failed']:,}",
        f"  left segment  {report.left_segment:,}",
    ]
    if report.leavers is not None:
        leavers = report.leavers
        lines.append(
            f"  leavers       {leavers['owed']:,} owed a code: {leavers['done']:,} done, "
            f"{leavers['without_code']:,} without code, {leavers['failed']:,} failed; "
            f"watching {leavers['watched']:,} members"
        )
    if report.clevertap is not None:  # h7-clevertap
        pushes = report.clevertap
        lines.append(
            f"  clevertap     {pushes['pushed']:,} codes pushed, {pushes['failed']:,} refused, "
            f"{pushes['waiting']:,} not yet pushed"
        )
    calls = report.calls
    kinds = ", ".join(f"{count:,} {kind}" for kind, count in sorted(calls.items()))
    lines.append(
        f"  calls         {sum(calls.values()):,} this run"
        + (f": {kinds}" if kinds else "")
        + (f"; last at {report.last_call_at}" if report.last_call_at else "")
    )
    span = format_duration(report.rate_span_seconds)
    if report.calls_per_minute is not None or report.codes_per_minute is not None:
        when = f"the last {span}" if report.state == "running" else f"the last {span} before the last call"
        lines.append(
            f"  rate          {report.calls_per_minute or 0:.1f} calls/min, "
            f"{report.codes_per_minute or 0:.1f} codes/min over {when}"
        )
    if report.state == "running":
        eta = (
            format_duration(report.eta_seconds) if report.eta_seconds is not None else "unknown (no code saved lately)"
        )
        lines.append(f"  ETA           {eta} for {report.remaining:,} members")
    elif report.remaining:
        lines.append(
            f"  remaining     {report.remaining:,} members without a code: run the same command again to resume"
        )
    if report.errors:
        lines.append(f"latest errors ({len(report.errors)} of {report.failed_total:,} failed members)")
        for error in report.errors:
            status = " ".join(str(part) for part in (error.status, error.key) if part)
            request = f"; request {error.request_id}" if error.request_id else ""
            lines.append(
                f"  {error.identity} (row {error.row}): {status or 'no answer'}: {error.message or ''}"
                f"{request}; {error.attempts} attempts; {error.at}"
            )
    if report.previous_runs:
        lines.append("earlier runs")
        for earlier in report.previous_runs:
            end = earlier.ended_at or "never recorded its end"
            outcome = (
                f"exit {earlier.exit_code} {earlier.reason or ''}".rstrip() if earlier.exit_code is not None else "died"
            )
            lines.append(f"  run {earlier.id}  {earlier.started_at} → {end}  {outcome}")
    return "\n".join(lines)


def render_summary(summary: Summary) -> str:
    """The short human summary printed at the end of a run."""
    members, calls, rate, skipped, files = summary.members, summary.calls, summary.rate, summary.skipped, summary.files
    reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(skipped.by_reason.items()))
    per_code = f"{calls.per_code:.3f} per code" if calls.per_code else "no code published"
    achieved = rate.achieved_per_minute
    rate_line = (
        f"{achieved:.1f}/min of a {rate.budget} budget ({100 * rate.utilisation:.1f} %)"
        if achieved and rate.utilisation
        else f"budget {rate.budget}"
    )
    lines = [
        f"distribution {summary.distribution} · campaign {summary.campaign}",
        *_leavers_summary(summary.leavers),
        f"  published     {members.published}",
        f"  already held  {members.already_held}",
        f"  failed        {members.failed}",
        f"  skipped       {skipped.total}" + (f"  ({reasons})" if reasons else ""),
        f"  elapsed       {format_duration(summary.elapsed_seconds)}",
        f"  rate          {rate_line}",
        f"  calls         {calls.total}: {per_code}, {calls.retries} retries, "
        f"{calls.rate_limited_429} × 429, {calls.by_kind.get('lookup', 0)} look-ups",
        f"  output        {files['codes']} ({members.codes_in_output} codes)"
        if "codes" in files
        else "  output        none written: no code was ever published",
    ]
    if members.failed:
        lines.append(f"  errors        {files['errors']}")
    if skipped.total:
        unlisted = f" ({skipped.not_listed:,} not listed)" if skipped.not_listed else ""
        lines.append(f"  skipped rows  {files['skipped']}{unlisted}")
    if summary.segment_update.left:
        lines.append(f"  left segment  {summary.segment_update.left} (not touched; see {files.get('left')})")
    lines.append(_upload_line(summary))
    pushed = summary.clevertap  # h7-clevertap
    if pushed:
        lines.append(
            f"  clevertap     {pushed['pushed']} codes held, {pushed['failed']} refused, "
            f"{pushed['waiting']} not yet pushed" + (f" (see {pushed['errors_file']})" if pushed["failed"] else "")
        )
    if summary.resume_at:
        lines.append(f"  resume after  {summary.resume_at}")
    lines.append(f"exit {summary.exit_code}: {summary.message}")
    return "\n".join(lines)


def _leavers_summary(leavers: LeaversFigures | None) -> list[str]:
    """deliver_to=leavers: the lines saying what was watched and who left."""
    if leavers is None:
        return []
    compared = leavers.compared_with_run
    return [
        f"  watched       {leavers.watched} members"
        + (f"; {leavers.found_this_run} left since run {compared}" if compared else " (the baseline)"),
        (
            f"  leavers       {leavers.owed_total} owed a code: {leavers.served_total} hold one, "
            f"{leavers.without_code} without code, {leavers.failed} failed"
        ),
    ]


def _upload_line(summary: Summary) -> str:
    """Which file to hand to CleverTap, with which manifest: this run's delta, which no later run rewrites."""
    upload = summary.upload
    pushed = summary.clevertap or {}  # h7-clevertap: the run pushed the codes itself
    if pushed and not pushed.get("waiting") and not pushed.get("failed"):
        return "  upload        nothing: CleverTap holds every code (pushed by the run)"
    if not upload.codes:
        return "  upload        nothing new (no code published since the last delta file)"
    return f"  upload        {upload.codes} ({upload.count} codes) with {upload.manifest}"
