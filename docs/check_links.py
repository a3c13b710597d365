"""Check every relative markdown link `](path)` / `](path#anchor)` / `](#anchor)`
in README.md and docs/**/*.md: the file must exist and the anchor must match
a heading (GitHub's slug rules)."""
import os, re, sys, glob

root = sys.argv[1] if len(sys.argv) > 1 else '.'
files = [os.path.join(root, 'README.md')] + sorted(glob.glob(os.path.join(root, 'docs', '**', '*.md'), recursive=True))
link = re.compile(r'\]\(([^)\s]+)\)')

def strip_code(text):
    return re.sub(r'^```.*?^```', '', text, flags=re.M | re.S)

def slug(heading):
    h = heading.strip().lower()
    h = re.sub(r'[^\w\- ]', '', h)       # drop punctuation (keeps letters, digits, _, -, space)
    return h.replace(' ', '-')

def anchors(path):
    text = strip_code(open(path, encoding='utf-8').read())
    seen, out = {}, set()
    for m in re.finditer(r'^#{1,6}\s+(.*?)\s*#*\s*$', text, flags=re.M):
        s = slug(m.group(1))
        n = seen.get(s, 0); seen[s] = n + 1
        out.add(s if n == 0 else f'{s}-{n}')
    return out

bad = checked = 0
for f in files:
    text = strip_code(open(f, encoding='utf-8').read())
    for target in link.findall(text):
        if re.match(r'^[a-z]+:', target):      # http:, https:, mailto:
            continue
        checked += 1
        path, _, anchor = target.partition('#')
        dest = os.path.normpath(os.path.join(os.path.dirname(f), path)) if path else f
        if not os.path.exists(dest):
            print(f'{os.path.relpath(f, root)}: missing file: {target}'); bad += 1; continue
        if anchor:
            if not dest.endswith('.md'):
                print(f'{os.path.relpath(f, root)}: anchor on a non-markdown file: {target}'); bad += 1
            elif anchor not in anchors(dest):
                print(f'{os.path.relpath(f, root)}: missing anchor: {target}'); bad += 1
print(f'{len(files)} files, {checked} relative links checked, {bad} broken')
sys.exit(1 if bad else 0)
