"""`llm-fanout eval DATASET`: does an ensemble beat its own best member on your questions,
by how much, at what cost? Every question goes through the ensemble and through each of its
members alone; each answer is scored; the report gives each a score with its confidence
interval, latency, tokens and dollars (docs/evaluation.md)."""
