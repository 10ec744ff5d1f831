"""``tsd eval``: the paper's Table 1 protocol, end-to-end metrics on held-out identities and
the step-count quality/latency frontier, written as a JSON report, Markdown and a PNG."""
