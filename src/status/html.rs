//! `sopkit status --html DIR`: a static dashboard (one `index.html`, no scripts, no server,
//! nothing fetched) with the same data as the other formats and, per step, a timeline of
//! its runs: artifact size and duration as bars over time, coloured by result.
//!
//! Written by hand rather than through a template engine's HTML mode: every value passes
//! through one escaping function, and the charts are plain inline SVG.

use std::fmt::Write as _;

use super::{Status, parse_time};
use crate::evidence::log::Row;

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn badge(ok: bool, yes: &str, no: &str) -> String {
    if ok {
        format!("<span class=\"ok\">{}</span>", escape(yes))
    } else {
        format!("<span class=\"bad\">{}</span>", escape(no))
    }
}

fn colour(result: &str) -> &'static str {
    match result {
        "succeeded" => "#2e7d32",
        "failed" => "#c62828",
        "timed-out" => "#ef6c00",
        _ => "#6a1b9a",
    }
}

/// One chart: a bar per run at its start time, height `value`, coloured by result.
fn chart(title: &str, runs: &[(i64, f64, &Row)], label: &dyn Fn(f64) -> String) -> String {
    let (w, h, pad) = (640.0, 140.0, 30.0);
    let t0 = runs.iter().map(|r| r.0).min().unwrap_or(0) as f64;
    let t1 = runs.iter().map(|r| r.0).max().unwrap_or(0) as f64;
    let span = (t1 - t0).max(1.0);
    let max = runs.iter().map(|r| r.1).fold(0.0_f64, f64::max).max(1e-9);
    let mut svg = format!(
        "<svg class=\"chart\" role=\"img\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\"><title>{}</title>",
        escape(title)
    );
    let _ = write!(
        svg,
        "<line x1=\"{pad}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" stroke=\"#999\"/>",
        y = h - pad,
        x2 = w - 10.0
    );
    let _ = write!(
        svg,
        "<text x=\"{pad}\" y=\"12\" font-size=\"11\">{} (max {})</text>",
        escape(title),
        escape(&label(max))
    );
    let bar = ((w - pad - 20.0) / runs.len().max(1) as f64).clamp(2.0, 24.0);
    for (t, v, row) in runs {
        let x = pad + (*t as f64 - t0) / span * (w - pad - 20.0 - bar);
        let bh = (v / max * (h - 2.0 * pad)).max(1.0);
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{bh:.1}\" fill=\"{c}\"><title>{tip}</title></rect>",
            y = h - pad - bh,
            c = colour(&row.result),
            tip = escape(&format!(
                "{} {}: {} ({}{})",
                row.started,
                row.step,
                label(*v),
                row.result,
                if row.signed_by == "-" {
                    String::new()
                } else {
                    format!(", signed by {}", row.signed_by)
                }
            ))
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{pad}\" y=\"{y}\" font-size=\"10\">{}</text><text x=\"{x}\" y=\"{y}\" font-size=\"10\" text-anchor=\"end\">{}</text></svg>",
        escape(runs.first().map_or("", |r| r.2.started.as_str())),
        escape(runs.last().map_or("", |r| r.2.started.as_str())),
        y = h - 8.0,
        x = w - 10.0
    );
    svg
}

/// The dashboard page.
// The page is written top to bottom as it reads; its parts share the escaping and layout.
pub fn render(s: &Status, rows: &[Row]) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>sopkit status</title>\n<style>body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin-bottom:1.5em}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:14px}}.ok{{color:#2e7d32;font-weight:bold}}.bad{{color:#c62828;font-weight:bold}}.chart{{border:1px solid #eee;margin:4px 0}}h2{{margin-top:1.5em}}</style></head><body>\n<h1>sopkit status</h1>\n<p>At {} &middot; commit {} &middot; {}</p>\n",
        escape(&s.now),
        escape(s.commit.as_deref().unwrap_or("none")),
        if s.alerts.is_empty() {
            badge(true, "all in order", "")
        } else {
            badge(false, "", &format!("{} alert(s)", s.alerts.len()))
        }
    );
    if !s.alerts.is_empty() {
        o.push_str("<h2>Alerts</h2><ul id=\"alerts\">");
        for a in &s.alerts {
            let _ = write!(o, "<li>{}</li>", escape(a));
        }
        o.push_str("</ul>\n");
    }
    o.push_str("<h2>SOPs</h2><table id=\"sops\"><tr><th>SOP</th><th>title</th><th>state</th><th>awaiting</th><th>next review</th></tr>");
    for p in &s.sops {
        let state = match (p.version, p.last_effective_version) {
            (Some(v), _) => format!("v{v} effective"),
            (None, Some(v)) => format!("draft (v{v} effective)"),
            (None, None) => "draft".into(),
        };
        let awaiting: Vec<String> = p
            .could_sign
            .iter()
            .map(|(r, people)| format!("{r}: {}", people.join(", ")))
            .collect();
        let review = match &p.next_review {
            Some(d) => badge(!p.review_overdue, d, &format!("overdue since {d}")),
            None => String::new(),
        };
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{review}</td></tr>",
            escape(&p.id),
            escape(&p.title),
            escape(&state),
            escape(&awaiting.join("; "))
        );
    }
    o.push_str("</table>\n");
    if !s.slos.is_empty() {
        o.push_str("<h2>SLOs</h2><table id=\"slos\"><tr><th>SOP</th><th>step</th><th>every</th><th>last success</th><th>due</th></tr>");
        for l in &s.slos {
            let due = match &l.due {
                Some(d) => badge(!l.overdue, d, &format!("overdue since {d}")),
                None => badge(false, "", "overdue (never succeeded)"),
            };
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{due}</td></tr>",
                escape(&l.sop),
                escape(&l.step),
                escape(&l.every),
                escape(l.last_success.as_deref().unwrap_or("never"))
            );
        }
        o.push_str("</table>\n");
    }
    if !s.backup_sets.is_empty() {
        o.push_str("<h2>3-2-1-1-0</h2><table id=\"backup-sets\"><tr><th>SOP</th><th>copies</th><th>media</th><th>off-site</th><th>offline</th><th>errors</th><th>rule</th><th>where</th></tr>");
        for b in &s.backup_sets {
            let wheres: Vec<String> = b
                .copies
                .iter()
                .map(|c| format!("{} ({})", c.target, c.made))
                .collect();
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&b.sop),
                b.total_copies,
                b.media,
                b.off_site,
                b.offline,
                b.errors.len(),
                badge(b.rule_32110, "met", &b.shortfalls.join("; ")),
                escape(&wheres.join(", "))
            );
        }
        o.push_str("</table>\n");
    }
    if !s.retention.is_empty() {
        o.push_str("<h2>Retention</h2><table id=\"retention\"><tr><th>SOP</th><th>path</th><th>problem</th></tr>");
        for r in &s.retention {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td class=\"bad\">{}: {}</td></tr>",
                escape(&r.sop),
                escape(&r.path),
                escape(&r.kind),
                escape(&r.detail)
            );
        }
        o.push_str("</table>\n");
    }
    if !s.training.is_empty() {
        o.push_str("<h2>Training</h2><table id=\"training\"><tr><th>SOP</th><th>version</th><th>person</th><th>role</th></tr>");
        for t in &s.training {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>v{}</td><td>{}</td><td>{}</td></tr>",
                escape(&t.sop),
                t.version,
                escape(&t.person),
                escape(&t.role)
            );
        }
        o.push_str("</table>\n");
    }
    let _ = write!(
        o,
        "<h2>Evidence ledger</h2><p id=\"ledger\">{} ({} writers, {} records)</p>",
        badge(
            s.ledger.ok,
            "intact",
            &format!("{} problem(s)", s.ledger.problems.len())
        ),
        s.ledger.writers,
        s.ledger.records
    );
    if !s.ledger.problems.is_empty() {
        o.push_str("<ul>");
        for p in &s.ledger.problems {
            let _ = write!(o, "<li>{}</li>", escape(p));
        }
        o.push_str("</ul>");
    }

    // Timelines, one section per SOP step that has run.
    let mut steps: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.sop.as_str(), r.step.as_str()))
        .collect();
    steps.sort();
    steps.dedup();
    if !steps.is_empty() {
        o.push_str("<h2>Runs over time</h2>\n");
    }
    for (sop, step) in steps {
        let runs: Vec<(i64, &Row)> = rows
            .iter()
            .filter(|r| r.sop == sop && r.step == step)
            .filter_map(|r| Some((parse_time(&r.started)?, r)))
            .collect();
        let sizes: Vec<(i64, f64, &Row)> =
            runs.iter().map(|(t, r)| (*t, r.size as f64, *r)).collect();
        let durations: Vec<(i64, f64, &Row)> = runs
            .iter()
            .map(|(t, r)| {
                let end = r.ended.as_deref().and_then(parse_time).unwrap_or(*t);
                (*t, (end - t) as f64, *r)
            })
            .collect();
        let ok = runs.iter().filter(|(_, r)| r.result == "succeeded").count();
        let _ = writeln!(
            o,
            "<section class=\"timeline\" data-sop=\"{}\" data-step=\"{}\"><h3>{} &middot; {}</h3><p>{} runs, {} succeeded</p>{}{}</section>",
            escape(sop),
            escape(step),
            escape(sop),
            escape(step),
            runs.len(),
            ok,
            chart("artifact size", &sizes, &|v| indicatif::HumanBytes(
                v as u64
            )
            .to_string()),
            chart("duration", &durations, &|v| format!("{v:.0} s"))
        );
    }
    o.push_str("</body></html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_an_author_writes_is_escaped() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }
}
