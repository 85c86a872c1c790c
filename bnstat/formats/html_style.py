"""The look of the HTML report: its style sheet and the legend of the overview.

Colours follow the severity of the worst finding (`sev-error`, `sev-warning`, `sev-info`,
`sev-none` set `--sev` and `--tint`); the overview's plots stretch with their column, and
narrow windows (half a laptop screen, a phone) drop padding, tick labels and, last, the
secondary columns, so nothing runs off the page.
"""

CSS = """
:root{--ink:#1f2937;--muted:#6b7280;--line:#e5e7eb;--error:#dc2626;--warning:#d97706;
--info:#2563eb;--ok:#15803d}
.sev-none{--sev:#94a3b8;--tint:transparent}.sev-info{--sev:var(--info);--tint:#eff6ff}
.sev-warning{--sev:var(--warning);--tint:#fff7e6}.sev-error{--sev:var(--error);--tint:#fef2f2}
body{margin:0;color:var(--ink);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"DejaVu Sans",sans-serif}main{max-width:1320px;margin:0 auto;padding:20px 28px 60px}
code{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace}
a{color:inherit;text-decoration:none}a:hover code{text-decoration:underline}
h1{font-size:22px;margin:0}.sub,.facts,.legend,.clean{color:var(--muted)}.sub{margin:2px 0 10px}
.verdict{display:inline-block;margin:0 0 16px;padding:6px 14px;border-radius:6px;
font-weight:600;background:#dcfce7;color:#14532d}
.verdict.exit1,.verdict.exit2{background:#fee2e2;color:#991b1b}
table{border-collapse:collapse}th{text-align:left;font-weight:600}
.num,.stats td{text-align:right;font-variant-numeric:tabular-nums}
.summary td,.summary th{padding:4px 14px 4px 8px;border-bottom:1px solid var(--line)}
.summary tbody tr{box-shadow:inset 3px 0 var(--sev)}.zero{color:#c0c4cc}
td.sev-error,td.sev-warning,td.sev-info{color:var(--sev);font-weight:700}
.error{color:var(--error);font-weight:600}
details.ckpt{border:1px solid var(--line);border-left:4px solid var(--sev);border-radius:8px;
margin:14px 0;padding:4px 18px 14px}
summary{cursor:pointer}details.ckpt>summary{padding:8px 0}.path{font-size:15px;font-weight:700}
summary .facts,summary .counts{margin-left:14px;font-size:13px}
summary .counts{color:var(--sev);font-weight:600}.sev-none>summary .counts{color:var(--ok)}
details.part>summary{font-size:15px;font-weight:700;margin:18px 0 8px}
.part>summary .counts{font-weight:500;color:var(--muted)}
.legend{font-size:12.5px;margin:0 0 6px}svg{display:block}
.legend svg{display:inline-block;vertical-align:middle;margin-right:4px}
.overview{font-size:13px}.overview td{padding:0 6px;height:18px;white-space:nowrap}
.overview thead th{position:sticky;top:0;background:#fff;z-index:1;vertical-align:bottom;
font-size:12px;padding:4px 6px 0;border-bottom:1px solid var(--line)}
.overview tbody tr{background:var(--tint)}.overview tbody tr:hover{background:#eef2f7}
.overview{width:100%;max-width:1100px}.overview td.name{max-width:24em;overflow:hidden}
.overview .plot{padding:0 4px;width:38%;min-width:110px}.overview .plot+.plot{padding-left:22px}
svg.row *{vector-effect:non-scaling-stroke}.scroll{overflow-x:auto}
.finding code,.path,.summary code,.error{overflow-wrap:anywhere}.overview tr:not(.sev-none) td.name,
details.layer:not(.sev-none)>summary{box-shadow:inset 3px 0 var(--sev)}
svg text{font:10px system-ui,"DejaVu Sans",sans-serif;fill:var(--muted)}
.grid{stroke:#e3e6ea}.tick,.base{stroke:#9ca3af;fill:none}.ref{stroke:#6b7280;stroke-dasharray:3 3}
.band{fill:var(--sev);opacity:.8}.sev-none .band{fill:#9fb3c8;opacity:1}
.whisk{stroke:var(--sev);stroke-width:1.2;fill:none}.sev-none .whisk{stroke:#7f93a8}
.med{stroke:#111827;stroke-width:2}.off{fill:var(--sev)}.sev-none .off{fill:#475569}
.bar{stroke:#5b7fa6}.spread{stroke:#c3d0de}path.dead{fill:var(--error)}
.dataoff{stroke:var(--warning)}.hit{fill:transparent}
.badge{display:inline-block;padding:0 6px;margin-right:4px;border-radius:4px;
font-size:11.5px;font-weight:700;color:#fff;background:var(--sev)}
.nonfinite,.dead{color:var(--error);font-weight:600;font-size:12px}
.finding{border-left:3px solid var(--sev);background:var(--tint);border-radius:4px;
padding:6px 12px;margin:8px 0}.finding p{margin:3px 0}.fix{color:#374151}
details.layer{border-top:1px solid var(--line)}details.layer>summary{padding:5px 2px}
details.layer>summary code{font-weight:600;margin:0 10px 0 4px}
details.layer>summary .facts{margin:0 12px 0 0;font-size:12.5px}
details.layer[open]{padding-bottom:12px}
.notes{margin:6px 0;padding-left:22px}.notes li::marker{color:var(--sev)}
.charts{display:flex;flex-wrap:wrap;gap:10px 26px;margin:6px 0}
figure{margin:0}figcaption{font-size:12.5px;color:var(--muted);margin-bottom:2px}
.stats{font-size:12.5px;margin-top:6px}.stats td,.stats th{padding:2px 10px 2px 0}
.stats thead th{color:var(--muted);font-weight:500;text-align:right}
@media (max-width:760px){main{padding:14px 12px 40px}details.ckpt{padding:4px 10px 10px}
svg.axis .alt{display:none}.summary td,.summary th{padding:4px 6px}}
@media (max-width:560px){.overview .mean,.overview .count,.summary .format,.summary .layers,
svg.axis .inner{display:none}}
"""

LEGEND = (
    "<p class='legend sev-none'><svg width='44' height='14'><path class='whisk' "
    "d='M2 7H42M2 3V11M42 3V11'/><rect class='band' x='10' y='2' width='24' height='10' "
    "rx='2'/><path class='med' d='M20 0V14'/></svg> box: 1st to 99th percentile of the "
    "layer's channels, tick: median, whiskers: min and max, arrowheads: beyond the axis. "
    "Colour: the layer's worst finding (<span class='badge sev-error'>error</span> <span "
    "class='badge sev-warning'>warning</span> <span class='badge sev-info'>info</span>). "
    "The axes are shared by all layers of the checkpoint; hover a row for its numbers, "
    "click a name for its details.</p>"
)
