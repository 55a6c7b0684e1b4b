"""SVG charts for bench/run.py's report, with nothing but the standard library.

bar_chart(): one panel per case of a group, a horizontal bar per
implementation (the median) with a min-max whisker; line_chart(): a rate
against the number of processes, a line per implementation.
"""
import math
from xml.sax.saxutils import escape

FONT = 'font-family="sans-serif"'
LOG_SPREAD = 30.0  # a log axis once the largest value is this many times the smallest


def si(v):
    """1234567 -> '1.23M': a short label for an axis tick or a bar."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            x = v / div
            return ("%.3g" % x) + suffix
    return "%.3g" % v


def _nice_step(v):
    """The smallest 1, 2 or 5 x 10^k at or above v (v > 0)."""
    if v <= 0:
        return 1.0
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 5, 10):
        if m * e >= v * 0.999:
            return m * e
    return 10 * e


def colors(labels, n_ours=1):
    """A colour per label: ours in blues, raw loops in greys, Python in warm colours,
    so that one kind keeps one look on every chart."""
    ours, raw, py, other = (["#1f4e9c", "#3b8bd4", "#86bde8"], ["#555555", "#999999"],
                            ["#e8710a", "#c62828", "#f2b134"], ["#2e9e44", "#8e5bb5"])
    out = []
    for i, label in enumerate(labels):
        pool = ours if i < n_ours else raw if label.startswith("raw") else \
            py if label.startswith("Python") else other
        taken = sum(1 for c in out if c in pool)
        out.append(pool[taken % len(pool)])
    return out


class _Scale:
    """Maps a value to a pixel offset in [0, length]: linear from 0, or log."""

    def __init__(self, lo, hi, length, log=None):
        self.log = lo > 0 and (hi / lo > LOG_SPREAD if log is None else log)
        self.length = length
        if self.log:
            self.lo = 10 ** math.floor(math.log10(lo))
            self.hi = 10 ** math.ceil(math.log10(hi))
            if self.hi <= self.lo:
                self.hi = self.lo * 10
        else:
            self.step = _nice_step(hi / 5)
            self.lo, self.hi = 0.0, self.step * math.ceil(hi / self.step * 0.999)

    def __call__(self, v):
        if self.log:
            v = max(v, self.lo)
            return self.length * math.log10(v / self.lo) / math.log10(self.hi / self.lo)
        return self.length * (v - self.lo) / (self.hi - self.lo)

    def ticks(self):
        if self.log:
            n = round(math.log10(self.hi / self.lo))
            return [self.lo * 10 ** i for i in range(n + 1)]
        return [i * self.step for i in range(int(round(self.hi / self.step)) + 1)]


def _svg(width, height, body, title):
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
            'viewBox="0 0 %d %d" role="img" aria-label="%s">\n'
            '<rect width="100%%" height="100%%" fill="white"/>\n%s</svg>\n'
            % (width, height, width, height, escape(title, {'"': "&quot;"}), "".join(body)))


def _text(x, y, s, anchor="start", extra="", size=12):
    return '<text x="%.1f" y="%.1f" text-anchor="%s" %s font-size="%d" %s>%s</text>\n' % (
        x, y, anchor, FONT, size, extra, escape(s))


def bar_chart(title, rows, n_ours=1):
    """rows: [(case, unit, [(label, median, lo, hi), ...]), ...] -> SVG text.

    Each case is its own panel with its own axis (cases of a group have
    different units and magnitudes); when the values of any panel spread over
    more than LOG_SPREAD, every panel of the group is drawn on a log axis.
    """
    width, left, right, bar_h, gap = 820, 200, 90, 16, 5
    plot_w = width - left - right
    body, y = [_text(10, 22, title, extra='font-weight="bold"', size=15)], 34
    spans = [(min(min(v[1], v[2]) for v in impls), max(max(v[1], v[3]) for v in impls))
             for _, _, impls in rows]
    # One kind of axis for the whole group, so that the panels read alike.
    log = any(lo > 0 and hi / lo > LOG_SPREAD for lo, hi in spans)
    for (case, unit, impls), (lo, hi) in zip(rows, spans):
        sc = _Scale(lo, hi, plot_w, log)
        y += 20
        body.append(_text(10, y, "%s  (%s%s)" % (case, unit, ", log scale" if sc.log else ""),
                          extra='font-weight="bold"'))
        y += 8
        top = y
        palette = colors([v[0] for v in impls], n_ours)
        for i, (label, med, mn, mx) in enumerate(impls):
            color = palette[i]
            cy = y + bar_h / 2
            body.append(_text(left - 6, cy + 4, label, anchor="end"))
            body.append('<rect x="%d" y="%.1f" width="%.1f" height="%d" fill="%s">'
                        '<title>%s: median %s, range %s-%s</title></rect>\n'
                        % (left, y, max(sc(med), 1), bar_h, color, escape(label), si(med),
                           si(mn), si(mx)))
            x0, x1 = left + sc(mn), left + sc(mx)
            body.append('<path d="M%.1f %.1fH%.1fM%.1f %.1fV%.1fM%.1f %.1fV%.1f" '
                        'stroke="black" stroke-width="1" fill="none"/>\n'
                        % (x0, cy, x1, x0, cy - 4, cy + 4, x1, cy - 4, cy + 4))
            body.append(_text(max(left + sc(med), x1) + 5, cy + 4, si(med)))
            y += bar_h + gap
        for t in sc.ticks():
            x = left + sc(t)
            body.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ccc"/>\n'
                        % (x, top - 2, x, y))
            body.append(_text(x, y + 12, si(t), anchor="middle", extra='fill="#555"'))
        y += 16
    return _svg(width, y + 10, body, title)


def line_chart(title, xlabel, unit, counts, series, n_ours=1):
    """series: [(label, [(median, lo, hi) per count]), ...] -> SVG text.

    The x axis spaces the process counts evenly (1, 2, 4, 8 double each
    step); the y axis is linear from 0, or log when the lines lie far apart.
    """
    width, height = 760, 380
    left, right, top, bottom = 70, 230, 40, 50
    pw, ph = width - left - right, height - top - bottom
    pts = [p for _, ps in series for p in ps if p]
    lo = min(min(p) for p in pts)
    hi = max(max(p) for p in pts)
    sc = _Scale(lo, hi, ph)
    n = len(counts)

    def xof(i):
        return left + (pw * (i + 0.5) / n)

    def yof(v):
        return top + ph - sc(v)

    body = [_text(10, 22, title, extra='font-weight="bold"', size=15)]
    for t in sc.ticks():
        body.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>\n'
                    % (left, yof(t), left + pw, yof(t)))
        body.append(_text(left - 6, yof(t) + 4, si(t), anchor="end", extra='fill="#555"'))
    body.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>\n'
                % (left, top, pw, ph))
    for i, c in enumerate(counts):
        body.append(_text(xof(i), top + ph + 16, str(c), anchor="middle"))
    body.append(_text(left + pw / 2, height - 10, xlabel, anchor="middle"))
    body.append(_text(14, top + ph / 2, unit + (" (log)" if sc.log else ""), anchor="middle",
                      extra='transform="rotate(-90 14 %.1f)"' % (top + ph / 2)))
    palette = colors([label for label, _ in series], n_ours)
    for k, (label, ps) in enumerate(series):
        color = palette[k]
        xy = [(xof(i), yof(p[0])) for i, p in enumerate(ps) if p]
        body.append('<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>\n'
                    % (" ".join("%.1f,%.1f" % q for q in xy), color))
        for i, p in enumerate(ps):
            if not p:
                continue
            x = xof(i)
            body.append('<path d="M%.1f %.1fV%.1f" stroke="%s"/>\n'
                        % (x, yof(p[1]), yof(p[2]), color))
            body.append('<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s, %s: '
                        'median %s, range %s-%s</title></circle>\n'
                        % (x, yof(p[0]), color, escape(label), counts[i], si(p[0]), si(p[1]),
                           si(p[2])))
        ly = top + 8 + 18 * k
        body.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>\n'
                    % (left + pw + 12, ly, left + pw + 32, ly, color))
        body.append(_text(left + pw + 38, ly + 4, label))
    return _svg(width, height, body, title)
