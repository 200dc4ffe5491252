"""A coverage report as a terminal table (`examvault coverage CODE`), Chinese labels first."""

from __future__ import annotations

from datetime import datetime, tzinfo

from services.coverage.reports import CoverageReport

STATUS_ZH = {"pending": "待定", "complete": "完整", "incomplete": "不完整", "missing": "缺失"}
CAUSE_ZH = {"not_received": "未收到", "rejected": "已拒收", "clock_suspect": "时钟可疑"}
HEALTH_ZH = {
    "black": "黑屏",
    "frozen": "画面冻结",
    "covered": "遮挡/失焦",
    "scene_mismatch": "场景不符",
    "unchecked": "未完成检查",
    "check_failed": "无法检查",
    "damaged": "数据损坏",
}


def _clock(moment: datetime, zone: tzinfo) -> str:
    return moment.astimezone(zone).strftime("%H:%M:%S")


def render_report(report: CoverageReport, zone: tzinfo) -> str:
    start = report.required.start.astimezone(zone)
    end = report.required.end.astimezone(zone)
    lines = [
        f"场次 sitting {report.sitting}  考场 room {report.room}  机构 institution "
        f"{report.institution}",
        f"要求时段 required {start.isoformat()} → {end.isoformat()} "
        f"({report.required.seconds:.0f} s)",
        f"结论 verdict: {report.status.value} ({STATUS_ZH[report.status.value]})",
        "",
        f"{'camera':<24} {'position':<9} {'segments':>8} {'covered s':>10} {'ratio':>8} "
        f"{'gaps':>5} {'health':>6}",
    ]
    for camera in report.cameras:
        coverage = camera.coverage
        lines.append(
            f"{camera.camera:<24} {camera.position:<9} {camera.segments:>8} "
            f"{coverage.covered_seconds:>10.1f} {coverage.ratio:>8.1%} "
            f"{len(coverage.gaps):>5} {len(camera.health):>6}"
        )
        if camera.required != report.required:
            # A camera installed or retired during the sitting is required only while in service.
            lines.append(
                f"  在用 in service {_clock(camera.required.start, zone)} → "
                f"{_clock(camera.required.end, zone)} {camera.required.seconds:>8.1f} s"
            )
        for gap in coverage.gaps:
            lines.append(
                f"  缺口 gap    {_clock(gap.start, zone)} → {_clock(gap.end, zone)} "
                f"{gap.seconds:>8.1f} s  {gap.cause.value} ({CAUSE_ZH[gap.cause.value]})"
            )
        for flag in camera.health:
            seconds = (flag.end - flag.start).total_seconds()
            lines.append(
                f"  画面 health {_clock(flag.start, zone)} → {_clock(flag.end, zone)} "
                f"{seconds:>8.1f} s  {flag.kind} ({HEALTH_ZH.get(flag.kind, flag.kind)})"
            )
    if not report.cameras:
        lines.append("(no camera was in service in this room at the time / 该时段考场无在用摄像机)")
    return "\n".join(lines)
