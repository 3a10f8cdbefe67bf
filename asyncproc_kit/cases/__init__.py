"""The tutorial's case studies as code you can use in your own project.

One module per case, each imported by name (nothing here is re-exported from the top-level
package, so ``import asyncproc_kit`` stays light):

- ``asyncproc_kit.cases.batch``: many files through a command, surviving interruption (09);
- ``asyncproc_kit.cases.executor``: a remote executor that does not hand out a shell (10);
- ``asyncproc_kit.cases.cluster``: the same commands on Dask distributed (10);
- ``asyncproc_kit.cases.logs``: many processes, one tagged stream, nothing lost (11);
- ``asyncproc_kit.cases.health``: periodic checks that cannot hang the monitor (12).
"""
