"""Deep-entry timings for issue 15 (not a test: timings are measured, not asserted).

    .venv/bin/python -m tests.imagetool.deep_times single,750 single,1500 single,2000 hops,2

single,N[,L]: one entry N directories deep (a PAX path), its last name L bytes;
hops,K: depth K*1500 built from names under PATH_MAX through symlinks (now refused at
PATH_MAX). SRC=DIR runs another checkout's imagetool (e.g. an export of an old commit).
"""
import os, sys, time, tempfile, subprocess
sys.path.insert(0, os.environ.get("SRC", os.getcwd()))
from tests.support import layers
from tests.support.layers import Raw, raw_tar
from imagetool.unpacker import unpack

def entries_single(depth, last):
    return [Raw("x", data=b"x", pax={"path": "/".join(["d"] * depth) + "/" + last})]

def entries_hops(hops, per=1500):
    ents, prev = [], None
    for i in range(hops):
        base = (f"s{i}/" if prev else "") + "/".join([chr(97 + i)] * per)
        ents.append(Raw("x", "5", mode=0o755, pax={"path": base + "/"}))
        ents.append(Raw(f"s{i+1}", "2", pax={"linkpath": base}))
        prev = base
    ents.append(Raw("x", data=b"deep\n", pax={"path": f"s{hops}/f"}))
    return ents

def run(label, ents):
    d = tempfile.mkdtemp()
    lay = os.path.join(d, "lay")
    layers.write_image(lay, [raw_tar(ents)])
    t = time.perf_counter()
    try:
        unpack(lay, None, os.path.join(d, "b"))
        r = "ok"
    except Exception as e:
        r = f"{type(e).__name__}: {str(e)[-120:]}"
    dt = time.perf_counter() - t
    print(f"{label:34s} {dt:8.3f} s  {r}; bundle left: {os.path.exists(os.path.join(d, 'b'))}", flush=True)
    subprocess.run(["rm", "-rf", d])

for a in sys.argv[1:]:
    kind, n, *rest = a.split(",")
    if kind == "single":
        last = int(rest[0]) if rest else 1
        run(f"one entry {n} deep, last name {last}", entries_single(int(n), "f" * last))
    else:
        run(f"{n} hops of 1500 (depth {int(n)*1500})", entries_hops(int(n)))
