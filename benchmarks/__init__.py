"""Side-by-side benchmarks of the kit against anyio, asyncio, threads and plain subprocess.

Run them all with ``make bench`` (``python -m benchmarks``), or one module with
``python -m benchmarks core``. They print medians and ratios; they are not tests.
"""
