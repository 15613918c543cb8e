"""Boots the appliance image N times and reports boot-to-all-running, poweroff time and
superd's memory as PID 1 (see boot.sh). Times:
- host: from starting boot.sh (QEMU) until the probe's `BENCH all-running` line arrives on the
  serial console, and from its `BENCH poweroff` line until QEMU has exited;
- guest: the same two spans on the guest's clock (/proc/uptime; the kernel's timestamp of
  `reboot: Power down`), i.e. without QEMU's own start-up and exit."""
import re, statistics, subprocess, sys, time

out, boots = sys.argv[1], int(sys.argv[2])
# More boot.sh arguments (the watchdog run: --watchdog --append ...).
extra = sys.argv[3:]


def boot():
    start = time.monotonic()
    p = subprocess.Popen(["packaging/appliance/boot.sh", out, "--timeout", "120", *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    r = {}
    lines = []
    for line in p.stdout:
        now = time.monotonic() - start
        line = line.rstrip("\r\n")
        lines.append(line)
        if "BENCH all-running" in line:
            r["host_running"] = now
            r["guest_running"] = float(line.split("uptime=")[1])
        elif "BENCH poweroff" in line:
            r["host_poweroff_at"] = now
            r["guest_poweroff_at"] = float(line.split("uptime=")[1])
        elif line.startswith("BENCH superd"):
            for k, v in re.findall(r"(\w+): (\d+) kB", line):
                r[k] = int(v)
        elif "watchdog /dev/watchdog armed" in line:
            r["watchdog"] = True
        elif "reboot: Power down" in line:
            m = re.search(r"\[\s*([\d.]+)\]", line)
            if m:
                r["guest_down"] = float(m.group(1))
    status = p.wait()
    end = time.monotonic() - start
    needed = ["host_running", "guest_running", "host_poweroff_at", "VmRSS"]
    if extra:
        needed.append("watchdog")
    if status != 0 or any(k not in r for k in needed):
        sys.stderr.write("\n".join(lines[-40:]) + "\n")
        sys.exit(f"boot.py: boot failed (boot.sh status {status}, got {sorted(r)})")
    r["host_poweroff"] = end - r["host_poweroff_at"]
    if "guest_down" in r:
        r["guest_poweroff"] = r["guest_down"] - r["guest_poweroff_at"]
    return r


runs = []
for i in range(boots):
    r = boot()
    runs.append(r)
    print(f"boot {i + 1}: all running after {r['host_running']:.2f} s (guest {r['guest_running']:.2f} s), "
          f"poweroff {r['host_poweroff']:.2f} s (guest {r.get('guest_poweroff', float('nan')):.2f} s), "
          f"superd RSS {r['VmRSS'] / 1024:.1f} MiB (peak {r.get('VmHWM', 0) / 1024:.1f} MiB)", flush=True)


def med(k):
    vals = [r[k] for r in runs if k in r]
    return statistics.median(vals) if vals else float("nan")


print(f"median of {boots}: boot to all 7 workloads running {med('host_running'):.2f} s "
      f"(guest clock {med('guest_running'):.2f} s); poweroff {med('host_poweroff'):.2f} s "
      f"(guest {med('guest_poweroff'):.2f} s); superd as PID 1: RSS {med('VmRSS') / 1024:.1f} MiB "
      f"(anon {med('RssAnon') / 1024:.1f}, file {med('RssFile') / 1024:.1f}, shmem {med('RssShmem') / 1024:.1f}: "
      f"the binary's pages in the tmpfs root), peak {med('VmHWM') / 1024:.1f} MiB")
