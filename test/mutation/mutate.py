#!/usr/bin/env python3
"""mutate.py - mutation testing for libnea's test suite.

Applies one mutation (a realistic single-site bug, listed in mutations.txt) at
a time to a file under lib/, rebuilds the test programs incrementally, runs
ctest, and records whether some test noticed (KILLED), none did (SURVIVED), or
the mutant did not compile (INVALID, not counted). The original file is always
written back (try/finally, also on SIGINT/SIGTERM/SIGHUP) and checked against
its SHA-256 before the next mutation starts.

Run it with `python3 -B test/mutation/mutate.py` from anywhere; see test/mutation/README.md.
Python 3 standard library only.
"""

import argparse
import fcntl
import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DEFAULT_LIST = HERE / "mutations.txt"
MARKER_NAME = "mutation-in-progress.json"
ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class ListError(Exception):
    pass


class Interrupted(BaseException):
    """Raised by the signal handlers; a BaseException like KeyboardInterrupt."""


# --- the list -----------------------------------------------------------------


class Mutation:
    def __init__(self, mid, path, desc, original, replacement, lineno):
        self.id = mid
        self.path = path  # relative to ROOT, e.g. "lib/arena.c"
        self.desc = desc
        self.original = original
        self.replacement = replacement
        self.lineno = lineno  # where it starts in the list file

    def check(self, text):
        """Returns None if the mutation applies to text, else why it does not."""
        count = text.count(self.original)
        if count == 0:
            return "original snippet not found in %s" % self.path
        if count > 1:
            return "original snippet occurs %d times in %s (must be exactly once)" % (
                count, self.path)
        return None

    def apply(self, text):
        return text.replace(self.original, self.replacement, 1)


def parse_list(path):
    """Parses the mutation list (format: see the header of mutations.txt)."""
    muts = []
    cur = None
    errors = []

    def finish():
        if cur is None:
            return
        where = "%s:%d" % (path, cur["line"])
        for key in ("id", "file", "desc"):
            if not cur.get(key):
                errors.append("%s: mutation without '%s:'" % (where, key))
                return
        if not cur["minus"]:
            errors.append("%s: %s has no '- ' (original) line" % (where, cur["id"]))
            return
        original = "\n".join(cur["minus"])
        replacement = "\n".join(cur["plus"])
        if original == replacement:
            errors.append("%s: %s replaces its snippet with itself" % (where, cur["id"]))
            return
        muts.append(Mutation(cur["id"], cur["file"], cur["desc"], original, replacement,
                             cur["line"]))

    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            if line.startswith("- ") or line == "-":
                if cur is None:
                    errors.append("%s:%d: snippet line outside a mutation" % (path, lineno))
                elif cur["plus"]:
                    errors.append("%s:%d: '- ' line after '+ ' lines" % (path, lineno))
                else:
                    cur["minus"].append(line[2:])
                continue
            if line.startswith("+ ") or line == "+":
                if cur is None:
                    errors.append("%s:%d: snippet line outside a mutation" % (path, lineno))
                else:
                    cur["plus"].append(line[2:])
                continue
            stripped = line.strip()
            if stripped == "" or stripped.startswith("#"):
                continue
            key, sep, value = stripped.partition(":")
            if not sep or key not in ("id", "file", "desc"):
                errors.append("%s:%d: expected 'id:', 'file:', 'desc:', '- ' or '+ '" %
                              (path, lineno))
                continue
            value = value.strip()
            if key == "id":
                finish()
                cur = {"line": lineno, "id": value, "minus": [], "plus": []}
            elif cur is None:
                errors.append("%s:%d: '%s:' before any 'id:'" % (path, lineno, key))
            else:
                cur[key] = value
        finish()

    seen = set()
    for m in muts:
        if not ID_RE.match(m.id):
            errors.append("%s:%d: bad id %r" % (path, m.lineno, m.id))
        if m.id in seen:
            errors.append("%s:%d: duplicate id %s" % (path, m.lineno, m.id))
        seen.add(m.id)
        if not m.path.startswith("lib/") or ".." in Path(m.path).parts:
            errors.append("%s:%d: %s: file must be under lib/" % (path, m.lineno, m.id))
    if errors:
        raise ListError("\n".join(errors))
    return muts


def validate(muts):
    """Returns {id: problem} for every mutation that does not apply cleanly."""
    problems = {}
    cache = {}
    for m in muts:
        p = ROOT / m.path
        if m.path not in cache:
            cache[m.path] = p.read_text(encoding="utf-8") if p.is_file() else None
        text = cache[m.path]
        why = "no such file %s" % m.path if text is None else m.check(text)
        if why is not None:
            problems[m.id] = why
    return problems


# --- processes ----------------------------------------------------------------


def run(cmd, timeout=None, log=None):
    """Runs cmd in its own session. Returns (returncode, output, timed_out).

    On a timeout or an interrupt the child's process group (started here) is
    killed by its id before returning or re-raising."""
    if log is not None:
        log.write("$ %s\n" % " ".join(shlex.quote(c) for c in cmd))
        log.flush()
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True, text=True, errors="replace")
    try:
        out, _ = p.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        kill_group(p)
        out, _ = p.communicate()
        timed_out = True
    except BaseException:
        kill_group(p)
        p.wait()
        raise
    if log is not None:
        log.write(out)
        log.flush()
    return p.returncode, out, timed_out


def die(msg):
    """Refuses to go on: usage, setup or baseline problems (exit status 2)."""
    sys.stderr.write("mutate: %s\n" % msg)
    sys.exit(2)


def kill_group(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# --- build and test -----------------------------------------------------------


class Suite:
    def __init__(self, args, log):
        self.build = Path(args.build).resolve()
        self.exclude = args.exclude
        self.timeout = args.timeout
        self.jobs = args.jobs
        self.build_jobs = args.build_jobs
        self.log = log
        self.targets = []
        self.baseline_s = 0.0

    def configure(self):
        """Configures a new build dir (Debug, tests on), or re-runs CMake in an
        existing one, so that the test list find_targets reads is current."""
        cmd = ["cmake", "-S", str(ROOT), "-B", str(self.build)]
        if not (self.build / "CMakeCache.txt").is_file():
            print("configuring %s (Debug, NEA_BUILD_TESTS=ON)" % self.build, flush=True)
            cmd += ["-DCMAKE_BUILD_TYPE=Debug", "-DNEA_BUILD_TESTS=ON"]
        rc, out, _ = run(cmd, log=self.log)
        if rc != 0:
            die("configuring %s failed:\n%s" % (self.build, tail(out)))

    def ctest_base(self):
        cmd = ["ctest", "--test-dir", str(self.build), "--timeout", str(self.timeout),
               "--no-tests=error"]
        if self.exclude:
            cmd += ["-E", self.exclude]
        return cmd

    def find_targets(self):
        """The executables the selected tests run: what each mutant rebuilds."""
        rc, out, _ = run(self.ctest_base() + ["--show-only=json-v1"], timeout=120)
        if rc != 0:
            die("ctest --show-only failed:\n%s" % tail(out))
        tests = json.loads(out).get("tests", [])
        targets = []
        if any(not t.get("command") for t in tests):
            # A test whose program is not built yet has no command to read
            # its target from: build everything once, then read again.
            self.targets = []
            ok, out = self.build_tests()
            if not ok:
                die("the unmutated tree does not build:\n%s" % tail(out))
            rc, out, _ = run(self.ctest_base() + ["--show-only=json-v1"], timeout=120)
            tests = json.loads(out).get("tests", []) if rc == 0 else []
        for t in tests:
            cmd = t.get("command") or []
            if cmd and Path(cmd[0]).is_absolute() and self.build in Path(cmd[0]).parents:
                name = Path(cmd[0]).name
                if name not in targets:
                    targets.append(name)
        if not tests:
            die("no tests selected (exclude %r)" % self.exclude)
        self.targets = targets

    def build_tests(self):
        cmd = ["cmake", "--build", str(self.build), "--parallel", str(self.build_jobs)]
        if self.targets:
            cmd += ["--target"] + self.targets
        rc, out, _ = run(cmd, log=self.log)
        return rc == 0, out

    def watchdog(self):
        # ctest's --timeout only applies to tests without a TIMEOUT property;
        # a mutant that hangs a test is stopped here instead, and counts as
        # killed (the suite did not pass).
        return self.timeout + 3 * self.baseline_s + 15

    def run_tests(self, watchdog=None):
        cmd = self.ctest_base() + ["--parallel", str(self.jobs)]
        start = time.monotonic()
        rc, out, timed_out = run(cmd, timeout=watchdog, log=self.log)
        elapsed = time.monotonic() - start
        failed = re.findall(r"^\s*\d+ - (\S+) \(", out, re.M)
        return rc, failed, timed_out, elapsed, out


def tail(text, n=40):
    return "\n".join(text.splitlines()[-n:])


# --- restoring ----------------------------------------------------------------


def sha256(data):
    return hashlib.sha256(data).hexdigest()


class Restorer:
    """Holds one file's original bytes while it is mutated."""

    def __init__(self, path, marker):
        self.path = path
        self.marker = marker
        self.original = path.read_bytes()
        self.digest = sha256(self.original)

    def mutate(self, mid, data):
        with signals_blocked():
            self.marker.write_text(json.dumps({"id": mid, "file": str(self.path),
                                               "sha256": self.digest}) + "\n")
            self.path.write_bytes(data)

    def restore(self):
        # Signals wait until the file is back (and then interrupt the run).
        # The restored file gets a fresh mtime (not the original one): the
        # objects built from the mutant are older than it and get rebuilt.
        with signals_blocked():
            self.path.write_bytes(self.original)
            got = sha256(self.path.read_bytes())
            if got != self.digest:
                sys.stderr.write("mutate: FATAL: %s did not restore (sha256 %s, expected %s)\n"
                                 % (self.path, got, self.digest))
                sys.exit(3)
            self.marker.unlink(missing_ok=True)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class signals_blocked:
    def __enter__(self):
        self.old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)

    def __exit__(self, *exc):
        signal.pthread_sigmask(signal.SIG_SETMASK, self.old)
        return False


def on_signal(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


# --- main ---------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(
        description="Mutation testing for libnea: one mutation of lib/ at a time, "
                    "incremental rebuild, ctest, restore.")
    ap.add_argument("--build", default=str(ROOT / "build-mut"),
                    help="build directory (configured Debug with NEA_BUILD_TESTS=ON if it "
                         "has no CMakeCache.txt; default: %(default)s)")
    ap.add_argument("--list-file", default=str(DEFAULT_LIST),
                    help="mutation list (default: %(default)s)")
    ap.add_argument("--only", default="", help="comma-separated mutation ids to run")
    ap.add_argument("--list", action="store_true",
                    help="list the mutations and whether each applies, then exit")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="ctest parallelism (default: %(default)s)")
    ap.add_argument("--build-jobs", type=int, default=os.cpu_count() or 1,
                    help="build parallelism (default: %(default)s)")
    ap.add_argument("--timeout", type=int, default=60,
                    help="per-test timeout in seconds (default: %(default)s)")
    ap.add_argument("--exclude", default="install",
                    help="ctest -E regex of tests not to run (default: %(default)s)")
    ap.add_argument("--min-score", type=float, default=0.0,
                    help="exit 1 when the score (percent) is below this (default: 0)")
    ap.add_argument("--log", default=None,
                    help="full build and ctest output (default: BUILD/mutation.log)")
    args = ap.parse_args()

    try:
        muts = parse_list(args.list_file)
    except ListError as e:
        die("%s is malformed:\n%s" % (args.list_file, e))
    except OSError as e:
        die("cannot read %s: %s" % (args.list_file, e))

    if args.only:
        wanted = [s.strip() for s in args.only.split(",") if s.strip()]
        known = {m.id for m in muts}
        unknown = [w for w in wanted if w not in known]
        if unknown:
            die("unknown mutation id(s): %s" % ", ".join(unknown))
        muts = [m for m in muts if m.id in wanted]

    problems = validate(muts)
    if args.list:
        for m in muts:
            state = "ok" if m.id not in problems else "BROKEN: " + problems[m.id]
            print("%-34s %-18s %s  [%s]" % (m.id, m.path, m.desc, state))
        per_file = {}
        for m in muts:
            per_file[m.path] = per_file.get(m.path, 0) + 1
        print("\n%d mutations: %s" % (len(muts), ", ".join(
            "%s %d" % (Path(k).name, v) for k, v in sorted(per_file.items()))))
        return 1 if problems else 0
    if problems:
        for mid, why in problems.items():
            sys.stderr.write("mutate: %s: %s\n" % (mid, why))
        die("refusing to run: %d mutation(s) do not apply exactly once; fix "
                 "the list (the code moved?)" % len(problems))
    if not muts:
        die("no mutations selected")

    # One run at a time per work tree: two would mutate the same files.
    lock = open(__file__, "rb")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        die("another mutate.py run holds this work tree")

    for sig in STOP_SIGNALS:
        signal.signal(sig, on_signal)

    build = Path(args.build).resolve()
    build.mkdir(parents=True, exist_ok=True)
    marker = build / MARKER_NAME
    if marker.exists():
        die("%s exists: an earlier run was killed while a file was mutated (%s).\n"
                 "Check that file (git diff), restore it (git checkout -- FILE), then delete "
                 "the marker." % (marker, marker.read_text().strip()))

    log_path = Path(args.log) if args.log else build / "mutation.log"
    files = sorted({m.path for m in muts})
    before = {f: sha256((ROOT / f).read_bytes()) for f in files}

    with open(log_path, "w", encoding="utf-8") as log:
        suite = Suite(args, log)
        try:
            suite.configure()
            suite.find_targets()
            print("building %s (%s)" % (build, ", ".join(suite.targets) or "all"), flush=True)
            ok, out = suite.build_tests()
            if not ok:
                die("the unmutated tree does not build:\n%s" % tail(out))
            rc, failed, timed_out, elapsed, out = suite.run_tests()
            if rc != 0 or timed_out:
                die("the unmutated suite fails (%s); refusing to run:\n%s" %
                         (", ".join(failed) or ("timeout" if timed_out else "rc %d" % rc),
                          tail(out)))
            suite.baseline_s = elapsed
            print("baseline: suite passes in %.1fs; %d mutations; log: %s" %
                  (elapsed, len(muts), log_path), flush=True)
        except Interrupted as e:
            die("interrupted (%s) before any mutation" % e)

        results = []  # (mutation, verdict, detail)
        width = len(str(len(muts)))
        interrupted = None
        for i, m in enumerate(muts, 1):
            path = ROOT / m.path
            start = time.monotonic()
            try:
                restorer = Restorer(path, marker)
                try:
                    text = restorer.original.decode("utf-8")
                    why = m.check(text)
                    if why is not None:  # the file changed since validation
                        results.append((m, "INVALID", why))
                        print("[%*d/%d] INVALID   %-34s %s" % (width, i, len(muts), m.id, why),
                              flush=True)
                        continue
                    log.write("\n=== %s (%s): %s\n" % (m.id, m.path, m.desc))
                    restorer.mutate(m.id, m.apply(text).encode("utf-8"))
                    ok, out = suite.build_tests()
                    if not ok:
                        verdict, detail = "INVALID", "build failed"
                    else:
                        rc, failed, timed_out, _, out = suite.run_tests(suite.watchdog())
                        if timed_out:
                            verdict, detail = "KILLED", "timeout"
                        elif rc != 0:
                            verdict = "KILLED"
                            detail = ", ".join(failed) if failed else "ctest rc %d" % rc
                        else:
                            verdict, detail = "SURVIVED", ""
                finally:
                    restorer.restore()
            except Interrupted as e:
                interrupted = str(e)
                break
            results.append((m, verdict, detail))
            print("[%*d/%d] %-9s %-34s %-18s %5.1fs  %s" %
                  (width, i, len(muts), verdict, m.id, m.path, time.monotonic() - start,
                   detail), flush=True)

        # Leave the build matching the restored tree.
        try:
            suite.build_tests()
        except Interrupted:
            pass

    after = {f: sha256((ROOT / f).read_bytes()) for f in files}
    changed = [f for f in files if after[f] != before[f]]
    if changed:
        sys.stderr.write("mutate: FATAL: not restored: %s\n" % ", ".join(changed))
        return 3

    killed = [r for r in results if r[1] == "KILLED"]
    survived = [r for r in results if r[1] == "SURVIVED"]
    invalid = [r for r in results if r[1] == "INVALID"]
    valid = len(killed) + len(survived)
    score = 100.0 * len(killed) / valid if valid else 0.0
    print()
    if interrupted:
        print("interrupted (%s) after %d of %d mutations; the tree is restored" %
              (interrupted, len(results), len(muts)))
    print("mutation score: %d killed / %d valid (%.1f%%)" % (len(killed), valid, score))
    if invalid:
        print("invalid (not counted): %d" % len(invalid))
        for m, _, detail in invalid:
            print("  %-34s %s (%s)" % (m.id, m.desc, detail))
    if survived:
        print("survived: %d" % len(survived))
        for m, _, _ in survived:
            print("  %-34s %-18s %s" % (m.id, m.path, m.desc))
    if interrupted:
        return 130
    return 0 if score >= args.min_score else 1


if __name__ == "__main__":
    sys.exit(main())
