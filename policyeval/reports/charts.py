"""Charts as Vega-Lite (built with Altair), drawn in the page by inlined Vega-Embed.

Reports must open offline, on a laptop, from an e-mail attachment: no CDN. The Vega,
Vega-Lite and Vega-Embed libraries are inlined into the page from the bundle that
vl-convert-python ships (`vl_convert.javascript_bundle`, about 0.9 MB, built once per
process). Each chart's spec sits in a `<script type="application/json">` element next to
its container and is drawn as SVG on load. Where the installed vl-convert has no bundle,
the chart is rendered to a static SVG by `vl_convert.vegalite_to_svg` instead (also
offline), so a page never depends on the network either way.

Every chart accompanies a table with the same numbers, so the Markdown version (which
has no charts) loses nothing but the picture.
"""

from __future__ import annotations

import functools
import math
from datetime import date, datetime
from typing import Any, Sequence

import altair as alt
import pandas as pd

from .render import Chart, escape_html, script_json

RATE_AXIS = alt.Axis(format="%", title=None, grid=True)
SERIES_COLORS = ["#3b6fb6", "#d9822b", "#6a9f58", "#a25ea8", "#b3b3b3"]


# ---------------------------------------------------------------------------
# Building specs


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-safe dicts (NaN -> None, dates -> ISO text, numpy -> Python)."""
    out = []
    for row in frame.to_dict("records"):
        clean = {}
        for key, value in row.items():
            if hasattr(value, "item") and not isinstance(value, (str, bytes)):
                value = value.item()
            if isinstance(value, float) and math.isnan(value):
                value = None
            elif value is pd.NA or value is pd.NaT:
                value = None
            elif isinstance(value, (datetime, date)):
                value = value.isoformat()
            clean[str(key)] = value
        out.append(clean)
    return out


def _spec(chart: alt.TopLevelMixin) -> dict[str, Any]:
    return chart.to_dict()


def rate_chart(
    frame: pd.DataFrame,
    *,
    title: str,
    category: str = "category",
    series: str = "series",
    rate: str = "rate",
    low: str = "low",
    high: str = "high",
    label: str = "label",
    series_order: Sequence[str] | None = None,
    description: str = "",
) -> Chart:
    """Rates per category with Wilson interval error bars, one colour per series.

    `frame` has one row per (category, series): the rate, its bounds and a `label` such
    as "12.5% [8.1–18.7] (5/40)" for the tooltip. Rows without a rate are left out.
    """
    data = frame[frame[rate].notna()].copy() if len(frame) else frame
    order = list(series_order) if series_order else sorted(set(data[series])) if len(data) else []
    categories = list(dict.fromkeys(data[category])) if len(data) else []
    base = alt.Chart(alt.InlineData(values=_records(data))).encode(
        y=alt.Y(f"{category}:N", sort=categories, title=None, axis=alt.Axis(labelLimit=260)),
        yOffset=alt.YOffset(f"{series}:N", sort=order),
        color=alt.Color(f"{series}:N", sort=order, title=None,
                        scale=alt.Scale(domain=order, range=SERIES_COLORS[: max(1, len(order))]),
                        legend=alt.Legend(orient="top")),
        tooltip=[alt.Tooltip(f"{category}:N", title="category"), alt.Tooltip(f"{series}:N", title="series"),
                 alt.Tooltip(f"{label}:N", title="rate")],
    )
    bars = base.mark_rule(strokeWidth=2).encode(
        x=alt.X(f"{low}:Q", scale=alt.Scale(domain=[0, 1]), axis=RATE_AXIS), x2=f"{high}:Q")
    points = base.mark_point(filled=True, size=55).encode(x=alt.X(f"{rate}:Q"))
    step = 14 * max(1, len(order)) + 8
    chart = alt.layer(bars, points).properties(
        width=560, height=alt.Step(step) if categories else 40, title=title)
    return Chart(_spec(chart), title, description or f"{title}: the rates and intervals are listed in the table below.")


def heatmap(
    frame: pd.DataFrame,
    *,
    title: str,
    x: str,
    y: str,
    value: str,
    text: str,
    facet: str | None = None,
    color_title: str = "",
    domain: tuple[float, float] | None = None,
    colors: Sequence[str] = ("#eef3fb", "#8fb5e6"),
    description: str = "",
    x_order: Sequence[str] | None = None,
    y_order: Sequence[str] | None = None,
) -> Chart:
    """Cells of `y` x `x` (optionally one panel per `facet`) coloured by `value`, labelled by `text`.

    Light colours only, so the dark cell labels stay readable on every cell; with
    `domain` the colours are spread evenly over it (e.g. red, amber, green from 0 to 1).
    """
    if domain:
        low, high = domain
        stops = [low + (high - low) * i / (len(colors) - 1) for i in range(len(colors))]
        scale = alt.Scale(domain=stops, range=list(colors))
    else:
        scale = alt.Scale(range=list(colors))
    base = alt.Chart(alt.InlineData(values=_records(frame))).encode(
        x=alt.X(f"{x}:N", title=None, sort=list(x_order) if x_order else "ascending",
                axis=alt.Axis(labelAngle=-30, labelLimit=160, orient="top")),
        y=alt.Y(f"{y}:N", title=None, sort=list(y_order) if y_order else "ascending", axis=alt.Axis(labelLimit=260)),
    )
    cells = base.mark_rect(stroke="#ffffff").encode(
        color=alt.Color(f"{value}:Q", scale=scale, title=color_title or value, legend=alt.Legend(orient="top")),
        tooltip=[alt.Tooltip(f"{y}:N"), alt.Tooltip(f"{x}:N"), alt.Tooltip(f"{text}:N", title="items")],
    )
    labels = base.mark_text(fontSize=11).encode(text=alt.Text(f"{text}:N"), color=alt.value("#1d2330"))
    layered = alt.layer(cells, labels).properties(width=alt.Step(64), height=alt.Step(24))
    chart = layered.facet(column=alt.Column(f"{facet}:N", title=None)) if facet else layered
    chart = chart.properties(title=title)
    return Chart(_spec(chart), title, description or f"{title}: the counts are listed in the table below.")


def drift_chart(frame: pd.DataFrame, *, title: str, description: str = "", columns: int = 2) -> Chart:
    """Refusal rate over time per category (line, Wilson band) against its eval baseline (dashed rule).

    `frame`: category_id, bucket_start (date), rate, low, high, baseline_rate, drifted, label.
    """
    data = frame[frame["rate"].notna()].copy()
    base = alt.Chart().encode(x=alt.X("bucket_start:T", title=None, axis=alt.Axis(format="%b %d")))
    band = base.mark_area(opacity=0.18, color=SERIES_COLORS[0]).encode(
        y=alt.Y("low:Q", scale=alt.Scale(domain=[0, 1]), axis=RATE_AXIS), y2="high:Q")
    line = base.mark_line(color=SERIES_COLORS[0], point=False).encode(y="rate:Q")
    points = base.mark_point(filled=True, size=50).encode(
        y="rate:Q",
        color=alt.Color("status:N", scale=alt.Scale(domain=["within", "drift"], range=[SERIES_COLORS[0], "#b42318"]),
                        title=None, legend=alt.Legend(orient="top")),
        tooltip=[alt.Tooltip("category_id:N", title="category"), alt.Tooltip("bucket_start:T", title="from"),
                 alt.Tooltip("label:N", title="deployment"), alt.Tooltip("baseline_label:N", title="eval baseline")],
    )
    rule = alt.Chart().mark_rule(strokeDash=[5, 4], color="#5b6475").encode(y="mean(baseline_rate):Q")
    data["status"] = ["drift" if d else "within" for d in data["drifted"]]
    layered = alt.layer(band, line, rule, points, data=alt.InlineData(values=_records(data))).properties(
        width=300, height=150)
    chart = layered.facet(facet=alt.Facet("category_id:N", title=None), columns=columns).properties(title=title)
    return Chart(_spec(chart), title, description or f"{title}: the rates are listed in the table below.")


# ---------------------------------------------------------------------------
# Putting charts in a page

LOADER = """(function () {
  "use strict";
  var figures = document.querySelectorAll("[data-vega-spec]");
  Array.prototype.forEach.call(figures, function (el) {
    var target = el.querySelector(".chart-target");
    var placeholder = el.querySelector(".chart-placeholder");
    var spec;
    try {
      spec = JSON.parse(document.getElementById(el.getAttribute("data-vega-spec")).textContent);
    } catch (err) {
      el.setAttribute("data-chart-error", String(err));
      return;
    }
    if (typeof vegaEmbed !== "function") {
      el.setAttribute("data-chart-error", "vegaEmbed missing");
      return;
    }
    vegaEmbed(target, spec, {actions: false, renderer: "svg"}).then(function () {
      if (placeholder) { placeholder.remove(); }
      el.setAttribute("data-rendered", "true");
    }).catch(function (err) {
      el.setAttribute("data-chart-error", String(err));
      if (placeholder) { placeholder.textContent = "The chart could not be drawn: " + err; }
    });
  });
})();"""


def has_bundle() -> bool:
    import vl_convert

    return hasattr(vl_convert, "javascript_bundle")


def _vegalite_version() -> str | None:
    """The Vega-Lite minor version Altair writes specs for, if vl-convert has it."""
    import vl_convert

    wanted = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    return wanted if wanted in vl_convert.get_vegalite_versions() else None


@functools.lru_cache(maxsize=1)
def javascript_bundle() -> str:
    """Vega, Vega-Lite and Vega-Embed as one script defining window.vegaEmbed (built once)."""
    import vl_convert

    bundle = vl_convert.javascript_bundle(vl_version=_vegalite_version())
    # The bundle goes inside <script>: these sequences would end or confuse the element.
    return bundle.replace("</script", "<\\/script").replace("<!--", "<\\!--")


def chart_scripts() -> list[str]:
    """The inline scripts a page with charts needs (none when charts are static SVG)."""
    return [javascript_bundle(), LOADER] if has_bundle() else []


def chart_html(chart: Chart, chart_id: str) -> str:
    """A chart's figure: a container drawn on load, or a static SVG without the bundle."""
    caption = f"<figcaption>{escape_html(chart.description)}</figcaption>" if chart.description else ""
    if not has_bundle():
        import vl_convert

        svg = vl_convert.vegalite_to_svg(chart.spec, vl_version=_vegalite_version())
        return (f'<figure class="chart" id="{chart_id}" role="img" aria-label="{escape_html(chart.title)}">'
                f'<div class="chart-target">{svg}</div>{caption}</figure>')
    return (
        f'<figure class="chart" id="{chart_id}" data-vega-spec="{chart_id}-spec" role="img" '
        f'aria-label="{escape_html(chart.title)}">'
        f'<div class="chart-target"></div>'
        f'<p class="chart-placeholder">{escape_html(chart.title)}: this chart is drawn by the script at the end '
        f'of the page; the same numbers are in the table.</p>{caption}'
        f'<script type="application/json" id="{chart_id}-spec">{script_json(chart.spec)}</script></figure>'
    )
