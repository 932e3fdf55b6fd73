//! The report as one self-contained HTML page: inline CSS, one small
//! inline script (filter, sort, expand and collapse; the page reads
//! whole without it), no external resource of any kind, and a Content
//! Security Policy that allows nothing but that script (by its hash) and
//! inline styles. Every string from the archive goes through [`esc`];
//! nothing from it reaches the script. The same report renders to the
//! same bytes.

use std::fmt::Write as _;

use super::{ImageReport, Report, Signature, Uncompressed};
use crate::base::digest::Digest;
use crate::format::bundle::ArtifactKind;

/// Shared layers listed (the largest savings); the total covers them all.
pub const SHARED_LISTED: usize = 50;
/// Image names shown per shared layer before "and N more".
const USERS_SHOWN: usize = 3;
/// The longest string from the archive shown (control characters
/// escaped, the rest cut with a note).
pub const TEXT_MAX: usize = 1024;

/// `w!(out, …)`: formats into the page (writing to a String cannot fail).
macro_rules! w {
    ($out:expr, $($arg:tt)*) => {
        let _ = write!($out, $($arg)*);
    };
}

/// `s` as HTML text or a double-quoted attribute value: control
/// characters shown escaped (`\u{1b}`), cut to [`TEXT_MAX`] bytes, and
/// `& < > " '` as character references, so nothing in it is markup.
pub fn esc(s: &str) -> String {
    let line = crate::base::error::one_line(s, TEXT_MAX);
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

use crate::format::sizes::human;

/// An uncompressed size as shown: exact, `≈` an estimate, `≥` some layers
/// unknown, or `unknown`.
fn shown(u: &Uncompressed) -> String {
    match (u.known, u.unknown, u.approximate) {
        (0, n, _) if n > 0 => "unknown".into(),
        (_, n, _) if n > 0 => format!("≥ {}", human(u.bytes)),
        (_, _, true) => format!("≈ {}", human(u.bytes)),
        _ => human(u.bytes),
    }
}

/// The first 12 hex digits, for tables; the full digest is in the title.
fn short(d: &Digest) -> String {
    let hex = d.hex();
    format!(
        "<code title=\"{d}\">sha256:{}…</code>",
        hex.get(..12).unwrap_or(&hex)
    )
}

/// A bar `part / whole` wide.
fn bar(out: &mut String, class: &str, part: u64, whole: u64) {
    let pct = match whole {
        0 => 0.0,
        w => part as f64 * 100.0 / w as f64,
    };
    w!(
        out,
        "<span class=\"bar {class}\"><i style=\"width:{pct:.1}%\"></i></span>"
    );
}

const CSS: &str = "\
:root{--fg:#1b1f24;--mute:#59636e;--line:#d1d9e0;--bg2:#f6f8fa;--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--c:#0969da;--u:#8250df}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,\"Segoe UI\",sans-serif;color:var(--fg);margin:0 auto;max-width:1200px;padding:16px 24px}
h1{font-size:24px;margin:0 0 8px}h1 small{font-size:14px;color:var(--mute);font-weight:normal}
h2{font-size:18px;margin:0;display:inline}
section{margin:20px 0}section>details>summary{cursor:pointer;padding:6px 0;border-bottom:1px solid var(--line);margin-bottom:8px}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;word-break:break-all}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:var(--bg2);font-weight:600}.r{text-align:right;white-space:nowrap}
.facts{width:auto}.facts th{background:none;color:var(--mute);font-weight:normal;padding-left:0;white-space:nowrap}
.tag{display:inline-block;padding:0 8px;border-radius:10px;font-weight:600;color:#fff;background:var(--mute)}
.tag.ok{background:var(--ok)}.tag.bad{background:var(--bad)}.tag.warn{background:var(--warn)}
.note{color:var(--mute);margin:4px 0 8px}.problem{color:var(--bad)}
.name{unicode-bidi:isolate;word-break:break-all}
.bar{display:block;height:6px;background:var(--bg2);border-radius:3px;margin-top:3px;min-width:120px}
.bar i{display:block;height:6px;border-radius:3px;background:var(--c)}.bar.u i{background:var(--u)}
#img td:first-child{width:55%}#img summary{cursor:pointer}#img>tbody>tr>td:nth-child(n+3){text-align:right;white-space:nowrap}
.more{padding:6px 0 4px 16px;color:var(--mute)}.more table{margin-top:4px;width:auto}.more td{white-space:nowrap}.more th{background:none}
.more td,.more th{text-align:right}.more td:first-child,.more th:first-child,.more td:last-child,.more th:last-child{text-align:left}
.tools{display:flex;flex-wrap:wrap;gap:6px;align-items:center;margin:8px 0}
.tools input{flex:1 1 240px;padding:5px 8px;border:1px solid var(--line);border-radius:6px;font:inherit}
.tools button{font:inherit;padding:3px 10px;border:1px solid var(--line);border-radius:6px;background:#fff;cursor:pointer}
.tools button.on{background:var(--c);color:#fff;border-color:var(--c)}.tools button.on.desc::after{content:\" ↓\"}.tools button.on.asc::after{content:\" ↑\"}
nav a{margin-right:12px;color:var(--c)}footer{color:var(--mute);margin-top:24px;border-top:1px solid var(--line);padding-top:8px}
";

/// The page's one script. Rows carry their sizes in `data-c`, `data-u`
/// and `data-p`; names and platforms are read from the cells' text, never
/// parsed as markup. The state goes to the location's fragment
/// (`#q=TEXT&sort=-c`), and a page opened with one starts there
/// (`&open=all` also expands every image).
const SCRIPT: &str = "(function(){\
var d=document,t=d.getElementById('img'),tools=d.getElementById('tools');\
if(t&&tools){\
var b=t.tBodies[0],rows=[].slice.call(b.rows),q=d.getElementById('q'),shown=d.getElementById('shown'),key='',desc=false;\
rows.forEach(function(r){r.n=r.cells[0].querySelector('summary').textContent;r.k=(r.n+' '+r.cells[1].textContent).toLowerCase();});\
var save=function(){var h='q='+encodeURIComponent(q.value)+(key?'&sort='+(desc?'-':'')+key:'');try{history.replaceState(null,'','#'+h);}catch(e){}};\
var filter=function(){var s=q.value.trim().toLowerCase(),n=0;rows.forEach(function(r){var hide=s!==''&&r.k.indexOf(s)<0;r.hidden=hide;if(!hide){n++;}});shown.textContent=n+' of '+rows.length+' images shown';};\
var sort=function(k,down){key=k;desc=down;rows.sort(function(x,y){var a=k==='n'?x.n:+x.dataset[k],c=k==='n'?y.n:+y.dataset[k],v=a<c?-1:a>c?1:0;return down?-v:v;});\
var f=d.createDocumentFragment();rows.forEach(function(r){f.appendChild(r);});b.appendChild(f);\
[].forEach.call(tools.querySelectorAll('button[data-k]'),function(x){x.className=x.getAttribute('data-k')===k?(down?'on desc':'on asc'):'';});};\
[].forEach.call(tools.querySelectorAll('button[data-k]'),function(x){x.addEventListener('click',function(){var k=x.getAttribute('data-k');sort(k,k===key?!desc:k!=='n');save();});});\
q.addEventListener('input',function(){filter();save();});\
var all=function(open){[].forEach.call(b.querySelectorAll('details'),function(x){x.open=open;});};\
d.getElementById('open').addEventListener('click',function(){all(true);});\
d.getElementById('shut').addEventListener('click',function(){all(false);});\
location.hash.slice(1).split('&').forEach(function(p){var i=p.indexOf('='),k=p.slice(0,i),v=p.slice(i+1);\
try{v=decodeURIComponent(v);}catch(e){v='';}\
if(k==='q'){q.value=v;}if(k==='sort'&&/^-?[ncup]$/.test(v)){sort(v.replace('-',''),v.charAt(0)==='-');}if(k==='open'&&v==='all'){all(true);}});\
filter();tools.hidden=false;}\
d.documentElement.setAttribute('data-script','ran');\
})();";

/// `'sha256-…'` of the script, for the Content Security Policy.
fn script_hash() -> String {
    use base64::Engine as _;
    let digest = Digest::of(SCRIPT.as_bytes());
    let raw = hex::decode(digest.hex()).unwrap_or_default();
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// The page.
pub fn render(r: &Report) -> String {
    let mut out = String::with_capacity(4096 + r.images.len() * 900);
    let i = &r.inspection;
    let name = esc(&i.name);
    w!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src {}\">\n\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n\
<meta name=\"generator\" content=\"ferry {}\">\n<title>{name} — ferry bundle</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n",
        script_hash(),
        env!("CARGO_PKG_VERSION"),
    );
    header(&mut out, r);
    verify_section(&mut out, r);
    images(&mut out, r);
    shared(&mut out, r);
    charts_and_files(&mut out, r);
    referrers(&mut out, r);
    let how = match r.exact {
        true => "counted by decompressing each layer (<code>--exact</code>)",
        false => "read from their headers and trailers without decompressing: ≈ an estimate",
    };
    w!(
        out,
        "<footer>Written by ferry {} (<code>ferry inspect --html</code>) from {}. \
Sizes in binary units (1 KiB = 1024 bytes). Compressed: what a pull transfers (config and layers). \
Uncompressed: what the layers unpack to, {how}, ≥ some layers of unknown size.</footer>\n",
        env!("CARGO_PKG_VERSION"),
        esc(&file_name(&i.archive)),
    );
    w!(out, "<script>{SCRIPT}</script>\n</body>\n</html>\n");
    out
}

fn file_name(p: &std::path::Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

fn header(out: &mut String, r: &Report) {
    let i = &r.inspection;
    let count = |k: ArtifactKind| i.artifacts.iter().filter(|a| a.kind == k).count();
    let (images, charts, files) = (
        count(ArtifactKind::Image),
        count(ArtifactKind::Chart),
        count(ArtifactKind::File),
    );
    w!(
        out,
        "<header>\n<h1><span class=\"name\">{}</span> <small>ferry bundle</small></h1>\n<table class=\"facts\">\n",
        esc(&i.name)
    );
    w!(
        out,
        "<tr><th>bundle digest</th><td><code>{}</code> <span class=\"note\">(sha256 of bundle.json)</span></td></tr>\n",
        r.bundle_digest
    );
    let sig = match &r.signature {
        Signature::Checked { comment } => format!(
            "<span class=\"tag ok\">signed, checked</span> by the key given: trusted comment <q class=\"name\">{}</q>",
            esc(comment)
        ),
        Signature::NotChecked => {
            "<span class=\"tag warn\">signed, not checked</span> pass <code>--key KEY.pub</code> to check it".into()
        }
        Signature::Unsigned => "<span class=\"tag\">unsigned</span>".into(),
    };
    w!(out, "<tr><th>signature</th><td>{sig}</td></tr>\n");
    let verify = match &r.verify {
        None => "<span class=\"tag\">not run</span> pass <code>--verify</code> to hash every member".to_owned(),
        Some(v) if v.is_ok() => format!(
            "<span class=\"tag ok\">OK</span> {} members and {} artifacts intact, {} hashed",
            v.members_listed + 1,
            v.artifacts_ok.len(),
            human(v.bytes_hashed)
        ),
        Some(v) => format!(
            "<span class=\"tag bad\">FAILED</span> <a href=\"#verify\">{} problem(s)</a>; {} of {} members intact",
            v.problems.len(),
            v.members_ok,
            v.members_listed
        ),
    };
    w!(out, "<tr><th>verify</th><td>{verify}</td></tr>\n");
    let mut form = String::new();
    if i.compressed {
        w!(form, ", zstd-compressed from {}", human(i.content_bytes));
    }
    if !i.volumes.is_empty() {
        w!(form, ", {} volumes", i.volumes.len());
    }
    w!(
        out,
        "<tr><th>archive</th><td><code class=\"name\">{}</code> ({}{form})</td></tr>\n",
        esc(&file_name(&i.archive)),
        human(i.archive_bytes)
    );
    w!(
        out,
        "<tr><th>format</th><td>version {}, written by ferry {}</td></tr>\n",
        i.format_version,
        esc(&i.tool_version)
    );
    if let Some(c) = &r.created {
        w!(out, "<tr><th>created</th><td>{}</td></tr>\n", esc(c));
    }
    w!(
        out,
        "<tr><th>contents</th><td>{images} image(s), {charts} chart(s), {files} file(s); {} members, {} of content</td></tr>\n",
        i.members,
        human(i.content_bytes)
    );
    if let Some(d) = &i.delta {
        w!(
            out,
            "<tr><th>delta</th><td>against <span class=\"name\">{}</span>: {} blobs ({}) left out, expected at the target</td></tr>\n",
            esc(&d.base),
            d.absent.len(),
            human(d.absent.iter().map(|b| b.size).sum())
        );
    }
    for f in &r.faults {
        w!(
            out,
            "<tr><th>damage</th><td class=\"problem\">{}</td></tr>\n",
            esc(f)
        );
    }
    out.push_str("</table>\n<nav>");
    if r.verify.as_ref().is_some_and(|v| !v.is_ok()) {
        out.push_str("<a href=\"#verify\">Problems</a>");
    }
    out.push_str("<a href=\"#images\">Images</a><a href=\"#shared\">Shared layers</a>");
    if charts > 0 {
        out.push_str("<a href=\"#charts\">Charts</a>");
    }
    if files > 0 {
        out.push_str("<a href=\"#files\">Files</a>");
    }
    if !r.referrers.is_empty() {
        out.push_str("<a href=\"#referrers\">Referrers</a>");
    }
    out.push_str("</nav>\n</header>\n");
}

fn verify_section(out: &mut String, r: &Report) {
    let Some(v) = r.verify.as_ref().filter(|v| !v.is_ok()) else {
        return;
    };
    w!(
        out,
        "<section id=\"verify\"><details open><summary><h2>Verify: FAILED, {} problem(s)</h2></summary>\n\
<table><thead><tr><th>member</th><th>problem</th><th>needed by</th></tr></thead><tbody>\n",
        v.problems.len()
    );
    for p in &v.problems {
        w!(
            out,
            "<tr><td><code>{}</code></td><td class=\"problem\">{}</td><td class=\"name\">{}</td></tr>\n",
            esc(p.member.as_deref().unwrap_or("")),
            esc(&p.message),
            esc(&p.artifacts.join(", "))
        );
    }
    w!(
        out,
        "</tbody></table>\n<p>Intact artifacts: <span class=\"name\">{}</span></p></details></section>\n",
        match v.artifacts_ok.is_empty() {
            true => "none".into(),
            false => esc(&v.artifacts_ok.join(", ")),
        }
    );
}

fn images(out: &mut String, r: &Report) {
    let n = r.images.len();
    w!(
        out,
        "<section id=\"images\"><details open><summary><h2>Images ({n})</h2></summary>\n"
    );
    if let Some(note) = &r.uncompressed_note {
        w!(
            out,
            "<p class=\"note\">Uncompressed sizes: {}.</p>\n",
            esc(note)
        );
    }
    if n == 0 {
        out.push_str("<p>No images.</p></details></section>\n");
        return;
    }
    w!(
        out,
        "<div class=\"tools\" id=\"tools\" hidden><input id=\"q\" type=\"search\" placeholder=\"Filter by name or platform\" aria-label=\"Filter images\">\
<span>sort:</span><button data-k=\"n\">name</button><button data-k=\"p\">platforms</button><button data-k=\"c\">compressed</button><button data-k=\"u\">uncompressed</button>\
<button id=\"open\">expand all</button><button id=\"shut\">collapse all</button><span id=\"shown\" class=\"note\">{n} images</span></div>\n\
<table id=\"img\"><thead><tr><th>image</th><th>platforms</th><th class=\"r\">compressed</th><th class=\"r\">uncompressed</th></tr></thead>\n<tbody>\n"
    );
    let max_c = r.images.iter().map(|i| i.compressed).max().unwrap_or(0);
    let max_u = r
        .images
        .iter()
        .map(|i| i.uncompressed.bytes)
        .max()
        .unwrap_or(0);
    for img in &r.images {
        image_row(out, img, max_c, max_u);
    }
    out.push_str("</tbody></table></details></section>\n");
}

fn image_row(out: &mut String, img: &ImageReport, max_c: u64, max_u: u64) {
    let platforms: Vec<String> = img
        .platforms
        .iter()
        .map(|p| match p.platform.as_str() {
            "" => "—".to_owned(),
            s => esc(s),
        })
        .collect();
    w!(
        out,
        "<tr data-c=\"{}\" data-u=\"{}\" data-p=\"{}\"><td><details><summary class=\"name\">{}</summary><div class=\"more\">digest <code>{}</code><br>from <code class=\"name\">{}</code>",
        img.compressed,
        img.uncompressed.bytes,
        img.platforms.len(),
        esc(&img.reference),
        img.digest,
        esc(&img.source)
    );
    if let Some(p) = &img.problem {
        w!(out, "<div class=\"problem\">{}</div>", esc(p));
    }
    if !img.platforms.is_empty() {
        out.push_str("<table><tr><th>platform</th><th>layers</th><th>compressed</th><th>uncompressed</th><th>manifest</th></tr>");
        for (p, label) in img.platforms.iter().zip(&platforms) {
            w!(
                out,
                "<tr><td>{label}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                p.layers,
                human(p.compressed),
                shown(&p.uncompressed),
                short(&p.digest)
            );
        }
        out.push_str("</table>");
    }
    w!(
        out,
        "</div></details></td><td>{}</td><td>{}",
        platforms.join(" "),
        human(img.compressed)
    );
    bar(out, "c", img.compressed, max_c);
    w!(out, "</td><td>{}", shown(&img.uncompressed));
    if img.uncompressed.known > 0 {
        bar(out, "u", img.uncompressed.bytes, max_u);
    }
    out.push_str("</td></tr>\n");
}

fn shared(out: &mut String, r: &Report) {
    let s = &r.sharing;
    out.push_str(
        "<section id=\"shared\"><details open><summary><h2>Shared layers</h2></summary>\n",
    );
    if s.layers.is_empty() {
        out.push_str("<p>No layer is used by more than one image.</p></details></section>\n");
        return;
    }
    w!(
        out,
        "<p>{} layer(s) are used by more than one image; carrying each once saves <b id=\"saved\">{}</b> \
({} bytes): the images' configs and layers take {} counted image by image, {} carried once.</p>\n",
        s.layers.len(),
        human(s.saved),
        s.saved,
        human(s.separate),
        human(s.separate.saturating_sub(s.saved))
    );
    out.push_str("<table><thead><tr><th>layer</th><th class=\"r\">size</th><th class=\"r\">images</th><th class=\"r\">saved</th><th>used by</th></tr></thead><tbody>\n");
    let top = s.layers.first().map_or(0, |l| l.saved);
    for l in s.layers.iter().take(SHARED_LISTED) {
        let names: Vec<String> = l
            .images
            .iter()
            .take(USERS_SHOWN)
            .filter_map(|&i| r.images.get(i))
            .map(|i| esc(&i.reference))
            .collect();
        let more = l.images.len().saturating_sub(USERS_SHOWN);
        w!(
            out,
            "<tr><td>{}</td><td class=\"r\">{}</td><td class=\"r\">{}</td><td class=\"r\">{}",
            short(&l.digest),
            human(l.size),
            l.images.len(),
            human(l.saved)
        );
        bar(out, "c", l.saved, top);
        w!(out, "</td><td class=\"name\">{}", names.join(", "));
        if more > 0 {
            w!(out, " and {more} more");
        }
        out.push_str("</td></tr>\n");
    }
    out.push_str("</tbody></table>\n");
    if s.layers.len() > SHARED_LISTED {
        w!(
            out,
            "<p class=\"note\">The {SHARED_LISTED} largest savings of {} shared layers are listed; the total counts them all.</p>\n",
            s.layers.len()
        );
    }
    out.push_str("</details></section>\n");
}

fn charts_and_files(out: &mut String, r: &Report) {
    let arts = &r.inspection.artifacts;
    let charts: Vec<_> = arts
        .iter()
        .filter(|a| a.kind == ArtifactKind::Chart)
        .collect();
    if !charts.is_empty() {
        w!(
            out,
            "<section id=\"charts\"><details open><summary><h2>Charts ({})</h2></summary>\n\
<table><thead><tr><th>chart</th><th>version</th><th>app version</th><th class=\"r\">size</th><th>carried as</th><th>digest</th></tr></thead><tbody>\n",
            charts.len()
        );
        for a in charts {
            let (name, version, app) = match &a.chart {
                Some(c) => (
                    esc(&c.name),
                    esc(&c.version),
                    c.app_version.as_deref().map(esc).unwrap_or_default(),
                ),
                None => Default::default(),
            };
            w!(
                out,
                "<tr><td class=\"name\">{name}</td><td>{version}</td><td>{app}</td><td class=\"r\">{}</td><td class=\"name\">{}</td><td>{}</td></tr>\n",
                human(a.size),
                esc(&a.reference),
                short(&a.digest)
            );
        }
        out.push_str("</tbody></table></details></section>\n");
    }
    let files: Vec<_> = arts
        .iter()
        .filter(|a| a.kind == ArtifactKind::File)
        .collect();
    if !files.is_empty() {
        w!(
            out,
            "<section id=\"files\"><details open><summary><h2>Files ({})</h2></summary>\n\
<table><thead><tr><th>file</th><th>kind</th><th class=\"r\">size</th><th>carried as</th><th>digest</th></tr></thead><tbody>\n",
            files.len()
        );
        for a in files {
            let (title, kind) = match &a.file {
                Some(f) => (
                    esc(&f.title),
                    if f.directory { "directory" } else { "file" },
                ),
                None => (String::new(), "file"),
            };
            w!(
                out,
                "<tr><td class=\"name\">{title}</td><td>{kind}</td><td class=\"r\">{}</td><td class=\"name\">{}</td><td>{}</td></tr>\n",
                human(a.size),
                esc(&a.reference),
                short(&a.digest)
            );
        }
        out.push_str("</tbody></table></details></section>\n");
    }
}

fn referrers(out: &mut String, r: &Report) {
    if r.referrers.is_empty() {
        return;
    }
    // Grouped under their subject, subjects in the order first met.
    let mut subjects: Vec<Digest> = Vec::new();
    for x in &r.referrers {
        if !subjects.contains(&x.subject) {
            subjects.push(x.subject);
        }
    }
    w!(
        out,
        "<section id=\"referrers\"><details open><summary><h2>Referrers ({})</h2></summary>\n<ul>\n",
        r.referrers.len()
    );
    for s in subjects {
        let of: Vec<_> = r.referrers.iter().filter(|x| x.subject == s).collect();
        let subject = match of.first().and_then(|x| x.subject_reference.as_deref()) {
            Some(reference) => format!(
                "<span class=\"name\">{}</span> ({})",
                esc(reference),
                short(&s)
            ),
            None => format!("{} (not carried)", short(&s)),
        };
        w!(out, "<li>{subject}<ul>");
        for x in of {
            w!(
                out,
                "<li>{} <span class=\"name\">{}</span> <code>{}</code> {} {}{}</li>",
                esc(&x.kind),
                esc(&x.reference),
                esc(&x.artifact_type),
                short(&x.digest),
                esc(&human(x.size)),
                x.verified_by
                    .as_deref()
                    .map(|v| format!(" &middot; verified at pack by {}", esc(v)))
                    .unwrap_or_default()
            );
        }
        out.push_str("</ul></li>\n");
    }
    out.push_str("</ul></details></section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup_from_the_archive() {
        let hostile = "<script>alert(\"x\")</script>&'\u{1b}[2J";
        let e = esc(hostile);
        assert_eq!(
            e,
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;\\u{1b}[2J"
        );
        assert!(!e.contains(['<', '>', '"', '\'']));
        assert!(esc(&"x".repeat(10 * TEXT_MAX)).len() < 2 * TEXT_MAX);
    }

    #[test]
    fn the_content_security_policy_hash_is_the_scripts() {
        let h = script_hash();
        assert!(h.starts_with("'sha256-") && h.ends_with("='"), "{h}");
        // The script never closes its own element early.
        assert!(!SCRIPT.contains("</"));
    }

    #[test]
    fn uncompressed_sizes_say_how_precise_they_are() {
        let u = |bytes, known, unknown, approximate| Uncompressed {
            bytes,
            approximate,
            known,
            unknown,
        };
        assert_eq!(shown(&u(2048, 2, 0, false)), "2.0 KiB");
        assert_eq!(shown(&u(2048, 2, 0, true)), "≈ 2.0 KiB");
        assert_eq!(shown(&u(2048, 1, 1, true)), "≥ 2.0 KiB");
        assert_eq!(shown(&u(100, 0, 2, false)), "unknown");
    }
}
