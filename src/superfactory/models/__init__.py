"""Models of the physical world, pure and shared by both sides of the seam.

The twin uses them as ground truth (how fast a gang really runs on a degraded domain, what TTFT a pool really
delivers, how long a checkpoint really takes to cross the WAN); policies use the very same functions as
estimates, fed only with what an operator could measure (probe readings, realised demand, links that are up).

- :mod:`.collective`: NCCL ring all-reduce timing, the placement probe and a gang's throughput.
- :mod:`.serving`: prefill time, queueing (Erlang C / Allen-Cunneen), TTFT quantiles, load splitting.
- :mod:`.wan`: routing over the WAN (direct or best two-hop path) and transfer times.
- :mod:`.power`: IT and facility power and energy of training nodes.

Pure like ``domain/``: no I/O, no clock, no randomness, nothing from ``sim``, ``live``, ``mesh`` or ``observe``.
"""
