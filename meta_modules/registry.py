"""The 17 supervised modules, as data. Adding a module is one entry here plus its job."""

from __future__ import annotations

from dataclasses import dataclass

MINUTE = 60
HOUR = 60 * MINUTE


@dataclass(frozen=True)
class ModuleSpec:
    code: str
    name: str
    function: str
    task: str  # Celery task name of the module's job
    every_seconds: int  # default schedule
    calls_meta: bool  # whether the job talks to the Meta Graph API
    job: str  # what the job does, in one line (README / docs/modules.md)


def _task(fn: str) -> str:
    return f"meta_modules.jobs.{fn}"


MODULES: tuple[ModuleSpec, ...] = (
    ModuleSpec(
        "10.1",
        "Meta Models",
        "Base data layer",
        _task("check_data_layer"),
        6 * HOUR,
        False,
        "Checks the campaign mirror's integrity: orphans, accounts without campaigns, stale rows.",
    ),
    ModuleSpec(
        "10.2",
        "Meta Ads Client",
        "API communication",
        _task("sync_campaigns"),
        30 * MINUTE,
        True,
        "Syncs ad accounts, campaigns, ad sets and ads from Meta into the mirror.",
    ),
    ModuleSpec(
        "10.3",
        "Meta Orchestrator",
        "Campaign orchestration",
        _task("orchestrate_drafts"),
        HOUR,
        True,
        "Creates queued campaign drafts on Meta (PAUSED) and marks them ready to publish.",
    ),
    ModuleSpec(
        "10.4",
        "Insights Collector",
        "Performance data collection",
        _task("collect_insights"),
        HOUR,
        True,
        "Collects daily insights (spend, impressions, clicks, purchases) per ad from Meta.",
    ),
    ModuleSpec(
        "10.5",
        "ROAS Engine",
        "Return on ad spend optimization",
        _task("compute_roas"),
        HOUR,
        False,
        "Computes ROAS per campaign: sum of purchase value / sum of spend over 7 days.",
    ),
    ModuleSpec(
        "10.6",
        "Optimization Loop",
        "Continuous optimization",
        _task("propose_budget_changes"),
        2 * HOUR,
        False,
        "Proposes budget changes from each campaign's ROAS against the target ROAS.",
    ),
    ModuleSpec(
        "10.7",
        "Autonomous System",
        "Semi-autonomous control",
        _task("apply_budget_proposals"),
        HOUR,
        True,
        "Applies approved budget proposals on Meta within guardrails (max step, floor, ceiling).",
    ),
    ModuleSpec(
        "10.8",
        "Auto-Publisher",
        "Automated publishing",
        _task("publish_scheduled"),
        15 * MINUTE,
        True,
        "Activates ready drafts whose publish time has come.",
    ),
    ModuleSpec(
        "10.9",
        "Budget Spike Manager",
        "Anomaly detection",
        _task("detect_spend_spikes"),
        15 * MINUTE,
        False,
        "Detects spend spikes (today's spend rate vs the 7-day baseline) and raises alerts.",
    ),
    ModuleSpec(
        "10.10",
        "Creative Variants",
        "Variant generation",
        _task("generate_copy_variants"),
        6 * HOUR,
        False,
        "Generates copy variants for the best ads from fixed templates.",
    ),
    ModuleSpec(
        "10.11",
        "Full Cycle Manager",
        "End-to-end automation",
        _task("run_full_cycle"),
        12 * HOUR,
        True,
        "Runs sync → insights → ROAS → proposals in order and reports each step.",
    ),
    ModuleSpec(
        "10.12",
        "Targeting Optimizer",
        "Audience optimization",
        _task("score_audiences"),
        6 * HOUR,
        False,
        "Scores ad-set audiences by cost per purchase and flags the weakest.",
    ),
    ModuleSpec(
        "10.13",
        "Creative Intelligence",
        "AI-powered insights",
        _task("rank_creatives"),
        6 * HOUR,
        False,
        "Ranks creatives by CTR and conversion rate over 14 days.",
    ),
    ModuleSpec(
        "10.14",
        "Real-Time Engine",
        "Real-time spend monitoring",
        _task("poll_today_spend"),
        5 * MINUTE,
        True,
        "Polls today's spend per campaign from Meta.",
    ),
    ModuleSpec(
        "10.15",
        "Creative Analyzer",
        "Performance analysis",
        _task("detect_creative_fatigue"),
        6 * HOUR,
        False,
        "Flags creative fatigue: CTR of the last 7 days more than 20% below the 7 days before.",
    ),
    ModuleSpec(
        "10.16",
        "Creative Optimizer",
        "Winner selection",
        _task("select_winners"),
        6 * HOUR,
        False,
        "Picks the winning ad per ad set with a two-proportion z-test on conversion rate.",
    ),
    ModuleSpec(
        "10.17",
        "Creative Production",
        "Autonomous production",
        _task("produce_creatives"),
        24 * HOUR,
        False,
        "Turns approved copy variants into creative briefs ready for production.",
    ),
)

BY_CODE: dict[str, ModuleSpec] = {spec.code: spec for spec in MODULES}


def get(code: str) -> ModuleSpec:
    return BY_CODE[code]
