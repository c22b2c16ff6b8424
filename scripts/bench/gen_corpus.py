#!/usr/bin/env python3
"""Generate a synthetic, link-clean sopkit repository for benchmarks (see the README).

  gen_corpus.py --out DIR [--sops 5000] [--target-mb 60] [--seed 1] [--broken K] [--self-check]
  gen_corpus.py --out DIR --check-only (--self-check [--broken K] | --stats)

Standard library only; the same arguments always give the same bytes. The corpus is clean:
every link, anchor, glossary term, role, target and SLO resolves, and every glossary term used
in an SOP's prose is linked in that SOP. --broken K breaks K inline links of the same corpus
(missing files, anchors, terms, roles, images). --self-check re-reads the files from disk with
an independent checker and succeeds when it finds exactly K broken links and nothing else.
Word lists are in vocab.py. MB means 10^6 bytes of Markdown.
"""
import argparse, base64, os, posixpath, random, re, struct, sys, tomllib, zlib
from pathlib import Path
from urllib.parse import unquote

sys.dont_write_bytecode = True  # importing vocab.py must not leave __pycache__ in the repository
from vocab import (ACTORS, ALSO, COMMANDS, CONDS, DEPTS, DUTIES, MENTIONS, OBJECTS, PARTICIPLES, PATHS, PEOPLE,
                   REAL_TERMS, RESULTS, ROLE_TITLES, STEP_TITLES, TARGETS, TERM_HEADS, TERM_MODS, TITLE_ACTS,
                   TITLE_OBJS, TITLE_QUALS, TOPICS, VERBS, WHEN)

# --- Shared by the generator and the checker ---------------------------------------------

def slug(text):
    """GitHub's heading slug: lower-case, keep letters, digits, `_`, `-`, spaces become `-`."""
    return "".join("-" if c == " " else c for c in text.lower() if c.isalnum() or c in " -_")

class Slugger:
    """Numbers repeated slugs within one document: x, x-1, x-2 (as github-slugger does)."""
    def __init__(self):
        self.seen = {}

    def slug(self, text):
        base = result = slug(text)
        while result in self.seen:
            self.seen[base] += 1
            result = f"{base}-{self.seen[base]}"
        self.seen[result] = 0
        return result

class TermMatcher:
    """Glossary terms in prose, as sopkit's unlinked-term rule finds them: the name in any case
    (plural -s/-es allowed), the acronym exactly, both as whole words."""
    def __init__(self, terms):  # terms: [(name, acronym or None)]
        rx = lambda s, suffix: re.compile(r"(?<![\w-])" + re.escape(s) + suffix + r"(?!\w)")
        self.names = [(n.lower(), rx(n.lower(), "(?:es|s)?"), i) for i, (n, _) in enumerate(terms) if len(n) >= 3]
        self.acronyms = [(a, rx(a, "s?"), i) for i, (_, a) in enumerate(terms) if a and len(a) >= 2]

    def uses(self, text):
        """Indices of the terms that `text` mentions (a cheap `in` test first, then the regex)."""
        low, found = text.lower(), set()
        for needle, rx, i in self.names:
            if needle in low and rx.search(low):
                found.add(i)
        for needle, rx, i in self.acronyms:
            if needle in text and rx.search(text):
                found.add(i)
        return found

ACRONYM = re.compile(r"^(.+?)\s*\(([^()\s]+)\)$")  # sopkit's rule for a heading `Name (ACR)`
# (id, title, acronym, id of the role it reports to); an id is its title's slug.
ROLES = [(slug(t), t, "".join(w[0] for w in t.split()), b and slug(b)) for t, b in ROLE_TITLES]
cap = lambda s: s[0].upper() + s[1:]

def png(seed):
    """A valid 2x2 RGB PNG whose colour depends on seed."""
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    raw = b"".join(b"\0" + bytes([seed * 37 % 256, seed * 91 % 256, 200]) * 2 for _ in range(2))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))

# --- Generator ---------------------------------------------------------------------------

class Generator:
    """Writes the corpus into `out`. Every random choice comes from one seeded RNG, in a fixed
    order, so a seed always gives the same bytes."""
    def __init__(self, out, seed, n_terms):
        self.out, self.seed, self.rng, self.md_bytes = out, seed, random.Random(seed), 0
        self.terms = self.make_terms(n_terms)
        self.matcher = TermMatcher([(t[2], t[3]) for t in self.terms])
        for text in [r[1] for r in ROLES] + list(DEPTS.values()) + STEP_TITLES:
            assert not self.matcher.uses(text), f"vocabulary spells out a glossary term: {text}"
        # Filler sentences; any that would mention a glossary term by accident are dropped.
        self.pool = sorted({s for s in (self.sentence() for _ in range(30000)) if not self.matcher.uses(s)})

    def write(self, path, content):
        """Writes one file; Markdown counts towards the --target-mb budget."""
        p = self.out / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
        if path.endswith(".md"):
            self.md_bytes += len(content)

    def make_terms(self, n_terms):
        """Glossary terms [topic, heading, name, acronym, slug]: the real ones, then MODIFIER HEAD."""
        terms = []
        for topic, heads in REAL_TERMS.items():
            for h in heads:
                m = ACRONYM.match(h)
                terms.append([topic, h, m[1] if m else h, m[2] if m else None])
        combos = [f"{m} {h}" for m in TERM_MODS for h in TERM_HEADS]
        self.rng.shuffle(combos)
        used = set(DEPTS) | {r[2] for r in ROLES} | {"SOP", "ID"} | {t[3] for t in terms}
        for i, name in enumerate(combos[:max(0, n_terms - len(terms))]):
            acr = "".join(w[0] for w in name.split()) + "X"  # every third one gets an acronym
            acr = acr if i % 3 == 0 and acr not in used else None
            used.add(acr)
            terms.append([list(TOPICS)[i % len(TOPICS)], f"{name} ({acr})" if acr else name, name, acr])
        for t in terms:
            t.append(slug(t[1]))  # headings are unique within a glossary file: no -1 suffixes
        return terms

    def sentence(self):
        r = self.rng
        a, v, o, w, c = (r.choice(x) for x in (ACTORS, VERBS, OBJECTS, WHEN, CONDS))
        return cap(r.choice([f"{a} {v} {o} {w}{r.choice(ALSO)}.", f"If {c}, {r.choice(RESULTS)}.",
                             f"{o} is {r.choice(PARTICIPLES)} {w}.",
                             f"Where {c}, {a} {v} {o} and tells {r.choice(ACTORS)}.",
                             f"{o} **must** be {r.choice(PARTICIPLES)} {w}.",
                             f"Files for this step are kept under `{r.choice(PATHS)}`.",
                             f"Do not sign {o} until {a} has {r.choice(PARTICIPLES)} it.",
                             f"This usually takes {r.randint(2, 40)} minutes."]))

    def para(self, k=None):
        """A paragraph, one sentence per line."""
        return "\n".join(self.rng.choices(self.pool, k=k or self.rng.randint(3, 7)))

    def filler(self):
        """A paragraph, bullet list, numbered list or note."""
        r = self.rng.random()
        if r < 0.75:
            return self.para()
        if r < 0.9:
            items = self.rng.choices(self.pool, k=self.rng.randint(3, 5))
            return "\n".join(("- " if r < 0.85 else f"{i + 1}. ") + s for i, s in enumerate(items))
        return "> **Note:** " + self.para(2).replace("\n", "\n> ")

    def support_files(self):
        """sopkit.toml, images, glossary, roles, their keys and people.yaml."""
        rng = self.rng
        self.write("sopkit.toml", f"# Generated by scripts/bench/gen_corpus.py --seed {self.seed}\n\n[paths]\n"
                   'procedures = "procedures"\nglossary = "glossary"\nroles = "roles"\n'
                   'people = "roles/people.yaml"\nkeys = "roles/keys"\n'
                   + "".join(f'\n[targets.{k}]\nkind = "local"\npath = "{p}"\nmedium = "{m}"\nlocation = "{l}"\n'
                             f'connectivity = "{c}"\n' for k, (p, m, l, c) in TARGETS.items()))
        for i, d in enumerate(DEPTS):
            self.write(f"assets/flow-{d.lower()}.png", png(i))
        # Glossary: one file per topic, `## Term (ACR)` and its definition, some "see also" links.
        for topic, title in TOPICS.items():
            parts = [f"# Glossary: {title}", self.para(2)]
            for t in (t for t in self.terms if t[0] == topic):
                parts += [f"## {t[1]}", f"{t[2]} is the agreed way of working when {rng.choice(CONDS)}.\n"
                          + self.para(2)]
                if rng.random() < 0.3:
                    o = rng.choice(self.terms)
                    parts.append(f"See also [{o[1]}]({'' if o[0] == topic else o[0] + '.md'}#{o[4]}).")
            self.write(f"glossary/{topic}.md", "\n\n".join(parts) + "\n")
        titles = {r[0]: r[1] for r in ROLES}
        for rid, title, acr, boss in ROLES:
            fm = (f"---\nid: {rid}\ntitle: {title}\nacronym: {acr}\n"
                  f"levels: [L{rng.randint(1, 2)}, L{rng.randint(3, 4)}]\n" + (f"reports_to: {boss}\n" if boss else ""))
            body = f"# {title}\n\n" + (f"The {title} reports to the [{titles[boss]}]({boss}.md).\n\n" if boss else "")
            body += "## Responsibilities\n\n" + "\n".join("- " + s for s in rng.sample(self.pool, 5)) + "\n"
            self.write(f"roles/{rid}.md", fm + "---\n\n" + body)
        self.write("roles/README.md", "# Roles\n\n" + "".join(f"- [{t}]({r}.md)\n" for r, t, _, _ in ROLES))
        people = []
        for first, last in ((f, l) for f in PEOPLE[0] for l in PEOPLE[1]):
            pid = (first[0] + last).lower()
            key = f"{pid}_ed25519.pub"
            # A well-formed OpenSSH public key (`check` parses every listed key) of 32
            # seeded random bytes: nobody holds its private half.
            blob = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + rng.randbytes(32)
            self.write(f"roles/keys/{key}",
                       f"ssh-ed25519 {base64.b64encode(blob).decode()} {pid}@example.com\n")
            holds = "".join(f"      - {{ role: {r[0]}, from: 2025-{rng.randint(1, 12):02d}-01 }}\n"
                            for r in rng.sample(ROLES, rng.randint(1, 2)))
            people.append(f"  - id: {pid}\n    name: {first} {last}\n    email: {first.lower()}.{last.lower()}"
                          f"@example.com\n    admin: {'true' if len(people) < 2 else 'false'}\n"
                          f"    keys: [{key}]\n    roles:\n{holds}")
        self.write("roles/people.yaml", "people:\n" + "".join(people))

    def plan(self, n_sops):
        """Pass 1: every SOP's id, file, roles and headings (with slugs), so others can link to them."""
        plan, per_dept = [], dict.fromkeys(DEPTS, 0)
        for i in range(n_sops):
            dept = list(DEPTS)[i % len(DEPTS)]
            per_dept[dept] += 1
            sid = f"{dept}-{per_dept[dept]:04d}"
            while True:  # titles appear in prose, so they must not name a glossary term
                title = f"{self.rng.choice(TITLE_ACTS)} {self.rng.choice(TITLE_OBJS)}{self.rng.choice(TITLE_QUALS)}"
                if not self.matcher.uses(title):
                    break
            steps = self.rng.sample(STEP_TITLES, self.rng.randint(3, 6))
            heads = [f"# {sid} {title}", "## 1. Purpose", "## 2. Scope", "## 3. Responsibilities",
                     "## 4. Definitions", "## 5. Procedure"]
            for k, st in enumerate(steps, 1):  # repeated "Checks" and "Notes" get -1, -2, ... slugs
                heads += [f"### 5.{k} {st}", "#### Checks"] + (["#### Notes"] if k % 2 == 0 else [])
            heads += ["## 6. Records", "## 7. References", "## 8. Revision History"]
            sl = Slugger()
            plan.append(dict(dept=dept, id=sid, title=title, steps=steps, heads=heads,
                             slugs=[sl.slug(h.lstrip("#").strip()) for h in heads], file=f"{sid}-{slug(title)}.md",
                             roles=self.rng.sample(ROLES, self.rng.randint(2, 3))))
        index = ["# Procedures", "Every SOP of this repository, by department."]
        for d, name in DEPTS.items():
            index += [f"## {name}", "| ID | Title | Owner |\n| --- | --- | --- |\n" + "\n".join(
                f"| [{p['id']}]({p['file']}) | {p['title']} | {p['roles'][0][1]} |" for p in plan if p["dept"] == d)]
        self.write("procedures/README.md", "\n\n".join(index) + "\n")
        self.write("README.md", "# SOP repository\n\nStart at the [procedures](procedures/README.md) or the "
                   "[roles](roles/README.md). Glossaries: "
                   + ", ".join(f"[{t}](glossary/{k}.md)" for k, t in TOPICS.items()) + ".\n")
        return plan

    def sop(self, i, p, plan, budget):
        """Pass 2: one SOP padded with filler to about `budget` bytes. Returns its text, the inline
        link of each kind that --broken may break, and the term whose link it would break."""
        rng = self.rng
        owner, approvers = p["roles"][0], p["roles"][1:]
        my_terms = rng.sample(self.terms, rng.randint(2, 3))  # the last one is linked reference-style
        refs = [plan[j] for j in rng.sample(range(len(plan)), 3) if j != i][:2]
        anchors = [rng.choice(r["slugs"]) for r in refs]  # any of their headings, "checks-2" included
        step_at = sorted(rng.sample(range(len(p["steps"])), 2 if rng.random() < 0.8 else 1))
        step_ids = [slug(p["steps"][k]).strip("-") for k in step_at]
        fm = (f"---\nid: {p['id']}\ntitle: \"{p['title']}\"\nstatus: draft\nowner: {owner[0]}\n"
              f"approvers: [{', '.join(r[0] for r in approvers)}]\nreview_every: 365d\n"
              + ("retention: 35d\n" if i % 4 == 0 else "")
              + f"slos:\n  - {{ step: {step_ids[0]}, every: 1d }}\n---\n\n")
        gl = lambda t: f"../glossary/{t[0]}.md#{t[4]}"
        brk = next((t for t in my_terms[:-1] if t[3]), my_terms[0])  # --broken prefers a term with an acronym
        dests = {"role": f"../roles/{owner[0]}.md", "term": gl(brk), "xref": f"{refs[0]['file']}#{anchors[0]}",
                 "self": "#6-records", "image": f"../assets/flow-{p['dept'].lower()}.png"}
        mention = lambda t: rng.choice(MENTIONS).format(t=t[3] if t[3] and rng.random() < 0.5 else t[2])
        secs = [[p["heads"][0]],
                [p["heads"][1], f"This procedure describes the {p['title'][0].lower() + p['title'][1:]} "
                                f"in {DEPTS[p['dept']]}.\n" + self.para()],
                [p["heads"][2], f"It does not cover the work described in [{refs[1]['id']}][related].\n" + self.para()],
                [p["heads"][3], "\n".join(f"- [{r[1]}](../roles/{r[0]}.md) {d}."
                                          for r, d in zip(p["roles"], rng.sample(DUTIES, 3)))],
                [p["heads"][4], "\n".join(f"- [{t[1]}]({gl(t)})" for t in my_terms[:-1])],
                [p["heads"][5], f"Record every result as described in [Records](#6-records).\n"
                                f"Follow the [{my_terms[-1][2]}][term] throughout.\n\n"
                                f"![Process flow for {p['dept']}]({dests['image']})"]]
        for k, st in enumerate(p["steps"]):
            sec = [f"### 5.{k + 1} {st}", self.para(), mention(rng.choice(my_terms))]
            if k in step_at:
                sid, tgt = step_ids[step_at.index(k)], rng.choice(list(TARGETS))
                if rng.random() < 0.15:
                    # Arguments `verify` takes (check rejects unknown ones): an object in a bucket.
                    sec.append(f"```sopkit {{step={sid} action=verify}}\ntarget: {tgt}\n"
                               f"key: {sid}/backup-{rng.randint(3, 30)}.tar.zst\n```")
                else:
                    extra = " timeout=30m" if rng.random() < 0.5 else ""
                    extra += " env=BACKUP_PASSPHRASE" if rng.random() < 0.2 else ""
                    sec.append(f"```sh {{step={sid} target={tgt}{extra}}}\nDEST={TARGETS[tgt][0]}\n"
                               + "\n".join(rng.sample(COMMANDS, 2)) + "\n```")
            sec += ["#### Checks", self.para()] + (["#### Notes", self.para()] if (k + 1) % 2 == 0 else [])
            if k == 0 and rng.random() < 0.3:
                sec.append(f"Repeat these checks after any [revision](#{p['slugs'][-1]}) of this procedure.")
            secs.append(sec)
        records = "\n".join(f"| {cap(o[4:])} | {rng.choice(PATHS)} | {rng.randint(1, 10)} years |"
                            for o in rng.sample(OBJECTS, 3))
        secs += [["## 6. Records", "| Record | Kept in | Retention |\n| --- | --- | --- |\n" + records],
                 ["## 7. References",
                  "\n".join(f"- [{r['id']} {r['title']}]({r['file']}#{a})" for r, a in zip(refs, anchors))],
                 ["## 8. Revision History", "| Version | Date | Change |\n| --- | --- | --- |\n"
                  "| 1.0 | 2025-03-01 | First issue |",
                  f"[related]: {refs[1]['file']}#{anchors[1]}\n[term]: {gl(my_terms[-1])}"]]
        size = len(fm) + sum(len(b) + 2 for s in secs for b in s)
        pads = [secs[1], secs[2]] + secs[6:-3] * 4  # the procedure's sections get most of the filler
        while size < budget:
            sec, block = rng.choice(pads), self.filler()
            sec.insert(rng.randint(1, len(sec)), block)
            size += len(block) + 2
        return fm + "\n\n".join(b for s in secs for b in s) + "\n", dests, brk

def generate(out, n_sops, target_mb, seed, n_terms, broken):
    """Writes the corpus; returns a description of each link that --broken broke."""
    g = Generator(out, seed, n_terms)
    g.support_files()
    plan = g.plan(n_sops)
    bad = random.Random(seed * 7919 + 1).sample(range(n_sops), min(broken, n_sops)) if broken else []
    bad, injected = {s: k for k, s in enumerate(bad)}, []
    target = int(target_mb * 1_000_000)
    for i, p in enumerate(plan):
        # This SOP's share of what is left of the budget, +-40%.
        text, dests, brk = g.sop(i, p, plan, (target - g.md_bytes) / (n_sops - i) * g.rng.uniform(0.6, 1.4))
        g.md_bytes += len(text)  # the unbroken size, so that --broken K changes nothing but K links
        if i in bad:  # break one inline link, cycling through the kinds
            kind = list(dests)[bad[i] % len(dests)]
            old = dests[kind]
            new = {"role": "../roles/chief-wizard.md", "self": "#6-record", "image": "../assets/missing-diagram.png",
                   "term": old.split("#")[0] + "#" + (brk[3] or brk[4] + "s").lower(),  # `#rpo`, `#audit-trails`
                   "xref": f"{p['dept']}-9999-retired-procedure.md" if bad[i] % 2 else
                           old.split("#")[0] + "#section-that-does-not-exist"}[kind]
            assert f"]({old})" in text
            text = text.replace(f"]({old})", f"]({new})", 1)
            injected.append(f"procedures/{p['file']}: {kind} ({old} -> {new})")
        (out / "procedures" / p["file"]).write_text(text)
    return injected

# --- Independent checker: re-reads the files; shares only slug() and TermMatcher ---------

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
INLINE = re.compile(r"(!?)\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFLINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\]]*\])+)\]\[([^\]]*)\]")
REFDEF = re.compile(r"^ {0,3}\[([^\]^][^\]]*)\]:\s*(\S+)")
CODE, TAG = re.compile(r"`[^`]*`"), re.compile(r"<[^>]+>")
ANCHOR = re.compile(r"<a\s[^>]*?\b(?:id|name)=\"([^\"]*)\"")
ACTIONS = {"archive", "verify", "copy", "prune", "git-mirror", "db-dump", "restore-test", "upload", "restore"}
label_of = lambda s: " ".join(s.lower().split())

def parse_md(text):
    """Front matter, headings, anchors, links, reference labels, steps and prose of one file."""
    d = dict(fm={}, slos=[], heads=[], anchors=set(), links=[], used=set(), defs={}, dup=[], steps=[], prose=[])
    lines, start = text.split("\n"), 0
    if lines[0] == "---" and "---" in lines[1:]:
        start = lines.index("---", 1) + 1
        fm = lines[1:start - 1]
        d["fm"] = {k: v.strip().strip('"') for k, v in (l.split(":", 1) for l in fm if re.match(r"[a-z_]+:", l))}
        d["slos"] = re.findall(r"\{ *step: *([^,}]+?) *,", "\n".join(fm))
    slugger, fence = Slugger(), None
    for no, line in enumerate(lines[start:], start + 1):
        if fence:  # inside a fenced code block until the closing fence
            fence = None if line.strip().startswith(fence) else fence
            continue
        if m := FENCE.match(line):
            fence = m[1]
            if d["heads"]:
                d["heads"][-1][3] = True
            if s := re.match(r"^(\w+)\s*\{(.*)\}$", m[2].strip()):  # ```lang {step=... target=...}
                d["steps"].append((no, s[1], [kv.split("=", 1) for kv in s[2].split()]))
            continue
        if not line.strip():
            continue
        if h := HEADING.match(line):
            text = TAG.sub("", INLINE.sub(lambda m: m[2], h[2])).replace("`", "")
            d["heads"].append([len(h[1]), text, slugger.slug(text), False])  # level, text, slug, has body
            d["anchors"].add(d["heads"][-1][2])
            continue
        if d["heads"]:
            d["heads"][-1][3] = True
        d["anchors"].update(ANCHOR.findall(line))
        if m := REFDEF.match(line):
            if label_of(m[1]) in d["defs"]:
                d["dup"].append((no, label_of(m[1])))
            else:
                d["defs"][label_of(m[1])] = (no, m[2])
            continue
        bare = CODE.sub("", line)
        d["links"] += [(no, m[3]) for m in INLINE.finditer(bare)]
        d["used"] |= {label_of(m[2] or m[1]) for m in REFLINK.finditer(bare)}
        d["prose"].append(TAG.sub("", INLINE.sub("", REFLINK.sub("", bare))))  # link texts are not prose
    return d

def scan(root, check_terms=True):
    """Checks the corpus at `root`. Returns (problems as (kind, where, message), stats), where
    kind is link (a broken link or anchor), meta (anything else) or term (an unlinked term)."""
    files, dirs = set(), {""}
    for dp, dn, fn in os.walk(root):
        dn[:] = [x for x in dn if x != ".git"]
        rel = "" if Path(dp) == Path(root) else Path(dp).relative_to(root).as_posix()
        dirs.add(rel)
        files |= {posixpath.join(rel, f) for f in fn}
    cfg = tomllib.loads((root / "sopkit.toml").read_text()) if "sopkit.toml" in files else {}
    targets = cfg.get("targets", {})
    paths = {"procedures": "procedures", "glossary": "glossary", "roles": "roles", "people": "roles/people.yaml",
             "keys": "roles/keys", **cfg.get("paths", {})}
    under = lambda p, base: p == base or p.startswith(base.rstrip("/") + "/")
    kind_of = lambda p: (None if posixpath.basename(p).lower() in ("readme.md", "index.md") else
                         "sop" if under(p, paths["procedures"]) else "role" if under(p, paths["roles"]) else None)
    docs = {p: parse_md((root / p).read_text("utf-8")) for p in sorted(files) if p.lower().endswith(".md")}
    problems, stats = [], dict(files=len(files), md_files=len(docs), sops=0, links=0, sop_links=0,
                               md_bytes=sum((root / p).stat().st_size for p in docs))
    bad = lambda kind, where, msg: problems.append((kind, where, msg))
    roles = {posixpath.basename(p)[:-3] for p in docs if kind_of(p) == "role"}
    # Glossary terms: headings of level 2 or deeper that have a body.
    terms, term_slugs = [], {}
    for p in (p for p in docs if under(p, paths["glossary"])):
        for level, text, s, has_body in docs[p]["heads"]:
            if level >= 2 and has_body:
                m = ACRONYM.match(text.strip())
                terms.append((m[1] if m else text.strip(), m[2] if m else None, p, s))
                term_slugs.setdefault(p, set()).add(s)
    matcher = TermMatcher([(t[0], t[1]) for t in terms])
    for name, t in targets.items():
        if t.get("kind") == "local" and "path" not in t:
            bad("meta", "sopkit.toml", f"target {name} needs path")

    sop_ids = {}
    for p, d in docs.items():
        kind, linked = kind_of(p), set()
        # Links: inline links and images, and reference definitions (each checked once).
        for no, dest in d["links"] + list(d["defs"].values()):
            stats["links"] += 1
            stats["sop_links"] += kind == "sop"
            where, dest = f"{p}:{no}", dest.strip()
            if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", dest) or dest.startswith("//"):
                continue  # an external URL, never fetched
            path, _, frag = dest.partition("#")
            path, frag = unquote(path.split("?")[0]), unquote(frag)
            joined = path[1:] if path.startswith("/") else posixpath.join(posixpath.dirname(p), path)
            target = posixpath.normpath(joined) if path else p
            if target.startswith(".."):
                bad("link", where, f"{dest} leaves the repository")
            elif target not in files and target not in dirs:
                bad("link", where, f"{dest}: {target} does not exist")
            elif not frag or frag == "top" or target not in docs:
                pass
            elif target in term_slugs:  # a term reference
                if frag in term_slugs[target]:
                    linked.add((target, frag))
                else:
                    bad("link", where, f"{dest}: #{frag} is not a term of {target}")
            elif frag not in docs[target]["anchors"]:
                bad("link", where, f"{dest}: #{frag} is no heading or anchor in {target}")
        for label in d["used"] - d["defs"].keys():
            bad("link", p, f"reference [{label}] is never defined")
        for label in d["defs"].keys() - d["used"]:
            bad("meta", p, f"reference definition [{label}] is never used")
        for no, label in d["dup"]:
            bad("meta", f"{p}:{no}", f"[{label}] is defined again")
        # Steps: syntax, unique ids, known targets and actions.
        step_ids = []
        for no, lang, kvs in d["steps"]:
            attrs = dict(kv for kv in kvs if len(kv) == 2)
            if (len(attrs) != len(kvs) or not set(attrs) <= {"step", "target", "timeout", "env", "action"}
                    or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", attrs.get("step", ""))):
                bad("meta", f"{p}:{no}", f"malformed step {kvs}")
            if attrs.get("step") in step_ids:
                bad("meta", f"{p}:{no}", f"step {attrs['step']} is used twice")
            step_ids.append(attrs.get("step"))
            if "target" in attrs and attrs["target"] not in targets:
                bad("meta", f"{p}:{no}", f"unknown target {attrs['target']}")
            if lang == "sopkit" and attrs.get("action") not in ACTIONS:
                bad("meta", f"{p}:{no}", "sopkit block without a known action")
        fm = d["fm"]
        if kind == "sop":
            stats["sops"] += 1
            for key in ("id", "title", "owner", "approvers"):
                if not fm.get(key):
                    bad("meta", p, f"front matter lacks {key}")
            if fm.get("id") in sop_ids:
                bad("meta", p, f"id {fm['id']} is also used by {sop_ids[fm['id']]}")
            sop_ids[fm.get("id")] = p
            for r in [fm.get("owner")] + re.findall(r"[\w-]+", fm.get("approvers", "")):
                if r not in roles:
                    bad("meta", p, f"role {r} is not defined")
            if (fm.get("status", "draft") not in ("draft", "effective", "retired")
                    or not re.fullmatch(r"\d+[smhdwy]", fm.get("review_every", "1d"))):
                bad("meta", p, "bad status or review_every")
            for s in d["slos"]:
                if s not in step_ids:
                    bad("meta", p, f"SLO names step {s}, which this SOP lacks")
            for i in matcher.uses("\n".join(d["prose"])) if check_terms else ():
                if (terms[i][2], terms[i][3]) not in linked:
                    bad("term", p, f"term {terms[i][0]} is used but never linked")
        elif kind == "role":
            stem = posixpath.basename(p)[:-3]
            if fm.get("id") != stem or not fm.get("title") or fm.get("reports_to", stem) not in roles:
                bad("meta", p, "role id, title or reports_to is wrong")
    if paths["people"] in files:  # people.yaml: roles exist, key files exist
        people = (root / paths["people"]).read_text()
        for r in set(re.findall(r"role: *([\w-]+)", people)) - roles:
            bad("meta", paths["people"], f"role {r} is not defined")
        for keys in re.findall(r"keys: *\[([^\]]*)\]", people):
            for k in filter(None, (x.strip() for x in keys.split(","))):
                if posixpath.join(paths["keys"], k) not in files:
                    bad("meta", paths["people"], f"key file {k} does not exist")
    return problems, dict(stats, terms=len(terms), roles=len(roles))

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path, help="corpus directory (must be empty or absent)")
    ap.add_argument("--sops", type=int, default=5000)
    ap.add_argument("--target-mb", type=float, default=60.0, help="total Markdown size in MB (10^6 bytes)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--terms", type=int, default=200, help="glossary terms")
    ap.add_argument("--broken", type=int, default=0, metavar="K", help="inject (or expect) K broken links")
    ap.add_argument("--self-check", action="store_true", help="verify the corpus on disk independently")
    ap.add_argument("--check-only", action="store_true", help="do not generate; check or count an existing corpus")
    ap.add_argument("--stats", action="store_true", help="only print the statistics line (no term check)")
    a = ap.parse_args()
    if not a.check_only:
        if a.out.exists() and any(a.out.iterdir()):
            sys.exit(f"gen_corpus: {a.out} is not empty")
        a.out.mkdir(parents=True, exist_ok=True)
        for line in generate(a.out, a.sops, a.target_mb, a.seed, a.terms, a.broken):
            print("broken:", line)
    problems, st = scan(a.out, check_terms=a.self_check and not a.stats)
    print(f"corpus: files={st['files']} md_files={st['md_files']} sops={st['sops']} md_bytes={st['md_bytes']} "
          f"mb={st['md_bytes'] / 1e6:.1f} links={st['links']} links_in_sops={st['sop_links']} "
          f"links_per_sop={st['sop_links'] / max(st['sops'], 1):.1f} terms={st['terms']} roles={st['roles']}")
    if a.stats or not a.self_check:
        return 0
    count = {k: sum(1 for p in problems if p[0] == k) for k in ("link", "meta", "term")}
    for kind, where, msg in problems[:40]:
        print(f"  {kind}: {where}: {msg}")
    print(f"self-check: {count['link']} broken links (expected {a.broken}), {count['meta']} other problems, "
          f"{count['term']} unlinked terms" + (" (allowed: terms whose link --broken broke)" if a.broken else ""))
    ok = count["link"] == a.broken and not count["meta"] and (a.broken or not count["term"])
    print("self-check:", "OK" if ok else "FAILED")
    return 0 if ok else 1

if __name__ == "__main__":
    sys.exit(main())
