#!/usr/bin/env python3
"""Draws the Clinic Desk icon set (RGBA PNGs) with nothing but the standard library.

The mark: a teal rounded square holding a white medical cross inside an open ring,
the ring standing for "always in sync". Shapes are signed-distance functions sampled
4x4 per pixel, so the edges are anti-aliased at every size.
Run: python3 icons/draw.py   (writes the PNGs next to this script)
"""
import math
import os
import struct
import zlib

# The freedesktop hicolor sizes the Linux packages install (tauri.conf.json's bundle.icon),
# plus 128x128@2x for platforms that want a high-density 128.
SIZES = {
    "16x16.png": 16,
    "32x32.png": 32,
    "48x48.png": 48,
    "64x64.png": 64,
    "128x128.png": 128,
    "128x128@2x.png": 256,
    "256x256.png": 256,
    "icon.png": 512,
}


def rounded_box(px, py, half, radius):
    qx, qy = abs(px) - half + radius, abs(py) - half + radius
    outside = math.hypot(max(qx, 0.0), max(qy, 0.0))
    return outside + min(max(qx, qy), 0.0) - radius


def cross(px, py, arm, thick):
    a = rounded_box_rect(px, py, arm, thick)
    b = rounded_box_rect(px, py, thick, arm)
    return min(a, b)


def rounded_box_rect(px, py, hx, hy, r=0.03):
    qx, qy = abs(px) - hx + r, abs(py) - hy + r
    return math.hypot(max(qx, 0.0), max(qy, 0.0)) + min(max(qx, qy), 0.0) - r


def ring(px, py, radius, width, gap_from, gap_to):
    d = abs(math.hypot(px, py) - radius) - width
    angle = math.atan2(py, px)
    if gap_from <= angle <= gap_to:
        # Round caps at the ends of the gap.
        ends = [(radius * math.cos(a), radius * math.sin(a)) for a in (gap_from, gap_to)]
        return min(math.hypot(px - ex, py - ey) - width for ex, ey in ends)
    return d


def shade(u, v):
    """Colour at a point of the unit square centred on 0 (coordinates in -0.5..0.5)."""
    if rounded_box(u, v, 0.47, 0.11) > 0:
        return (0, 0, 0, 0)
    t = (v + 0.5)  # top-to-bottom gradient
    bg = (int(20 + (13 - 20) * t), int(184 + (116 - 184) * t), int(166 + (110 - 166) * t))
    if cross(u, v, 0.17, 0.055) <= 0 or ring(u, v, 0.31, 0.035, -2.6, -2.0) <= 0:
        return (255, 255, 255, 255)
    return bg + (255,)


def render(size):
    rows = []
    n = 4
    for y in range(size):
        row = bytearray([0])
        for x in range(size):
            acc = [0, 0, 0, 0]
            for sy in range(n):
                for sx in range(n):
                    u = (x + (sx + 0.5) / n) / size - 0.5
                    v = (y + (sy + 0.5) / n) / size - 0.5
                    c = shade(u, v)
                    acc[0] += c[0] * c[3]
                    acc[1] += c[1] * c[3]
                    acc[2] += c[2] * c[3]
                    acc[3] += c[3]
            a = acc[3] / (n * n)
            if acc[3]:
                row += bytes([round(acc[0] / acc[3]), round(acc[1] / acc[3]), round(acc[2] / acc[3]), round(a)])
            else:
                row += bytes([0, 0, 0, 0])
        rows.append(bytes(row))
    return png(size, size, b"".join(rows))


def png(w, h, raw):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    for name, size in SIZES.items():
        with open(os.path.join(here, name), "wb") as f:
            f.write(render(size))
        print("wrote", name)
