#!/usr/bin/env python3
"""treediff.py A B: compares two directory trees entry by entry (type, mode, owner, link
target, content digest); prints the differences, or "identical: N entries", and exits 1 on
any difference. Directory times are not compared (unpackers set them differently)."""
import hashlib, os, stat, sys


def walk(root):
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            info = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid]
            if stat.S_ISLNK(st.st_mode):
                info.append(os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    info.append(hashlib.sha256(f.read()).hexdigest())
            out[rel] = info
    return out


a, b = walk(sys.argv[1]), walk(sys.argv[2])
diff = []
for k in sorted(set(a) | set(b)):
    if a.get(k) != b.get(k):
        diff.append(f"{k}: {a.get(k)} != {b.get(k)}")
if diff:
    print("\n".join(diff[:50]))
    sys.exit(1)
print(f"identical: {len(a)} entries")
