#!/usr/bin/env python3
"""test_report.py - bench/run.py's report writer and perfsvg.py's charts on
made-up samples: nothing is measured, so this runs in the unit suite.
"""
import argparse
import os
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import perfsvg  # noqa: E402
import run  # noqa: E402

INFO = [("CPU", "Test CPU"), ("cores", "2"), ("kernel", "Linux 6.1"),
        ("libc", "glibc 2.36"), ("python3", "3.11"), ("commit", "abc"), ("date", "today")]


def args(**kw):
    a = dict(runs=5, scale=1.0, only="", no_scaling=False)
    a.update(kw)
    return argparse.Namespace(**a)


def row(group, case, labels, samples, count=None):
    r = run.Row(group, case, "items/s", labels, count)
    r.samples = [list(s) for s in samples]
    return r


def fixture():
    rows = [
        row("conn", "pingpong", ["mp_conn", "raw", "Python Pipe"],
            [[900, 1000, 1100], [400, 500, 600], [9, 10, 11]]),
        row("conn", "oneway", ["mp_conn", "raw", "Python Pipe"],
            [[2000, 2000, 2000], [1000, 1000, 1000], [100, 100, 100]]),
        row("pool", "map & <chunks>", ["mp_pool", "Python Pool"], [[300, 300], [100, 100]]),
    ]
    spec = next(s for s in run.SCALING if s[0] == "pool")
    srows = [row("pool", spec[1], [l for l, _ in spec[5]], [[1000.0 * p], [100.0]], count=p)
             for p in run.COUNTS]
    return rows, [(spec, srows)]


class ReportTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.page = os.path.join(self.dir.name, "performance.md")
        os.makedirs(os.path.join(self.dir.name, "perf"))
        self.stale = os.path.join(self.dir.name, "perf", "gone.svg")
        open(self.stale, "w").close()

    def tearDown(self):
        self.dir.cleanup()

    def write(self, **kw):
        rows, scaling = fixture()
        run.write_report(self.page, args(**kw), ["--report", "x.md"], rows, scaling, INFO, 12.0,
                         (0.5, 0.7))
        with open(self.page) as f:
            return f.read()

    def test_page_links_every_chart_and_each_chart_is_valid_svg(self):
        text = self.write()
        links = [l.split("](")[1].rstrip(")") for l in text.splitlines() if l.startswith("![")]
        self.assertEqual(sorted(links), ["perf/conn.svg", "perf/pool.svg",
                                         "perf/scaling_pool.svg"])
        for link in links:
            root = ET.parse(os.path.join(self.dir.name, link)).getroot()
            self.assertEqual(root.tag, "{http://www.w3.org/2000/svg}svg")

    def test_stale_charts_are_removed(self):
        self.write()
        self.assertFalse(os.path.exists(self.stale))

    def test_cells_hold_median_and_range_and_ratios_are_ours_over_reference(self):
        text = self.write()
        self.assertIn("| pingpong | items/s | 1,000 <sub>900-1.1k</sub> | 500 <sub>400-600</sub> "
                      "| 10.00 <sub>9-11</sub> | 2.00x | 100x |", text)
        # scaling: the first of ours over each reference, at each count
        self.assertIn("| 8 | 8,000 <sub>8k-8k</sub> | 100 <sub>100-100</sub> | 80.0x |", text)

    def test_page_names_the_machine_and_the_command(self):
        text = self.write()
        for k, v in INFO:
            self.assertIn("| %s | %s |" % (k, v), text)
        self.assertIn("python3 bench/run.py --report docs/performance.md", text)
        self.assertNotIn("Quick sample", text)

    def test_a_quick_run_says_so_at_the_top(self):
        text = self.write(runs=1, scale=0.05)
        self.assertIn("Quick sample", "\n".join(text.splitlines()[:6]))


class MachineTest(unittest.TestCase):
    def test_machine_names_cpu_kernel_libc_python_commit_and_date(self):
        with tempfile.TemporaryDirectory() as build:
            info = dict(run.machine(build))
        for key in ("CPU", "cores", "memory", "kernel", "libc", "python3", "commit", "date"):
            self.assertTrue(info.get(key), key)
        self.assertTrue(info["date"].endswith("UTC"))


class ChartTest(unittest.TestCase):
    def test_bar_chart_uses_a_log_axis_when_values_spread_far(self):
        far = perfsvg.bar_chart("t", [("a", "u", [("x", 1e6, 1e6, 1e6), ("y", 1e3, 1e3, 1e3)])])
        near = perfsvg.bar_chart("t", [("a", "u", [("x", 2.0, 2.0, 2.0), ("y", 1.0, 1.0, 1.0)])])
        self.assertIn("log scale", far)
        self.assertNotIn("log scale", near)

    def test_labels_are_escaped(self):
        svg = perfsvg.line_chart("a & <b>", "n", "u", [1, 2], [("x & y", [(1, 1, 1), (2, 1, 3)])])
        ET.fromstring(svg)

    def test_si_labels(self):
        self.assertEqual([perfsvg.si(v) for v in (950, 1234, 5.6e6, 2e9)],
                         ["950", "1.23k", "5.6M", "2G"])


class ExpandTest(unittest.TestCase):
    def test_process_count_and_shared_work(self):
        argv = run.expand(["{build}/b", "x_{p}to{p}", "{per:8000}"], "/b", 0, 8)
        self.assertEqual(argv, ["/b/b", "x_8to8", "1000"])


if __name__ == "__main__":
    unittest.main()
