"""User-level steps: each reads its inputs from the store and writes its outputs there.

One module per step (ingest, decompose, separate, report, evaluate, apply) and one for
the job that chains them; each takes a :class:`pipelines.steps.context.JobContext`
holding the command's one Client and how it talks to its user.
"""
