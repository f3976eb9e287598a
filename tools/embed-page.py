#!/usr/bin/env python3
"""Write src/http_page.h, the status page as a C string, from src/http_page.html.

Run after editing the page: python3 tools/embed-page.py
"""
import json
import os

here = os.path.dirname(os.path.abspath(__file__))
src = os.path.join(here, "..", "src", "http_page.html")
dst = os.path.join(here, "..", "src", "http_page.h")
text = open(src, encoding="ascii").read()
lines = ["/* Generated from http_page.html by tools/embed-page.py: do not edit. */",
         "/* clang-format off */",
         "static const char http_page_html[] ="]
for line in text.splitlines(True):
    lines.append("    " + json.dumps(line))
lines[-1] += ";"
lines.append("/* clang-format on */")
with open(dst, "w") as f:
    f.write("\n".join(lines) + "\n")
