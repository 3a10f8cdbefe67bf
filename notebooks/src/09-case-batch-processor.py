# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Case study: a batch processor (case 1)
#
# The original's first case study converts a folder of videos with ffmpeg, four at a time.
# That is the everyday shape of process management: many files, one command, a limit. The
# hard part is not the limit. It is what happens when one file is broken, when the batch is
# interrupted halfway, and when you run it again the next morning.
#
# You will be able to…
# - run the original's design and see where it breaks: a panic, unbounded tasks, detached
#   work after an interrupt;
# - convert a folder with `process_files`: bounded workers, a progress bar, a report;
# - explain why outputs are written to a *part* file and renamed, and check that a failure
#   or an interrupt leaves no half-written output;
# - resume an interrupted batch from its journal, and predict exactly what a resume runs;
# - stop early with a halt policy, and export the run as a GNU parallel joblog.

# %%
# %matplotlib inline
import asyncio
import shlex
import tempfile
from pathlib import Path

import anyio
import imageio_ffmpeg

from asyncproc_kit import SpawnError, exercises, map_limited, plots, read_joblog, run
from asyncproc_kit.cases.batch import journal_joblog, process_files, read_journal

# %% [markdown]
# The `imageio-ffmpeg` package ships a complete ffmpeg, so nothing else needs installing.
# Its `lavfi` input generates a test picture: six one-second clips, a longer one, and a
# "video" that is really a text file. The clips are made concurrently, of course:

# %%
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
work = Path(tempfile.mkdtemp())
videos = work / "videos"
videos.mkdir()


def make_clip(path, seconds=1):
    return [FFMPEG, "-v", "error", "-f", "lavfi", "-i",
            f"testsrc=duration={seconds}:size=160x120:rate=10", "-c:v", "mpeg4", path]

# %%
clips = [videos / f"clip{n}.avi" for n in range(6)]
long_clip = work / "long.avi"
made = await map_limited([make_clip(c) for c in clips] + [make_clip(long_clip, 60)])
(videos / "broken.avi").write_text("this is not a video\n")
sorted(p.name for p in videos.iterdir())

# %% [markdown]
# ## The original (Rust, case 1)
#
# ```rust
# async fn run(mut self) -> Result<(), Box<dyn std::error::Error>> {
#     let semaphore = Arc::new(Semaphore::new(self.max_workers));
#     let mut handles = Vec::new();
#     while let Some(file) = self.input_queue.recv().await {
#         let sem = semaphore.clone();
#         let handle = tokio::spawn(async move {
#             let _permit = sem.acquire().await.unwrap();
#             println!("🔄 Processing: {:?}", file);
#             let output = Command::new("ffmpeg")
#                 .arg("-i").arg(&file).arg("-codec:v").arg("libx264")
#                 .arg(file.with_extension("mp4"))
#                 .output().await.unwrap();
#             if output.status.success() { println!("✅ Completed: {:?}", file); }
#             else { eprintln!("❌ Failed: {:?}", file); }
#         });
#         handles.push(handle);
#     }
#     for handle in handles { handle.await?; }
#     Ok(())
# }
# ```
#
# Mirrored in Python: `asyncio.create_task` is `tokio::spawn` (a task nobody owns),
# `run(...)` raising when the program cannot start is `.output().await.unwrap()`, and
# `handles` is the `Vec` that every file adds to.

# %%
handles = []


async def convert(semaphore, file, ffmpeg, say):
    async with semaphore:
        say(f"🔄 Processing: {file.name}")
        output = await run([ffmpeg, "-i", file, "-codec:v", "libx264", file.with_suffix(".mp4")],
                           check=False)                      # .unwrap() when it cannot start
        say(f"✅ Completed: {file.name}" if output.returncode == 0 else f"❌ Failed: {file.name}")


async def original(files, ffmpeg=FFMPEG, max_workers=4, say=print):
    semaphore = asyncio.Semaphore(max_workers)
    handles.clear()
    for file in files:                                       # while let Some(file) = rx.recv()
        handles.append(asyncio.create_task(convert(semaphore, file, ffmpeg, say)))
    for handle in handles:                                   # handle.await?
        await handle

# %% [markdown]
# ## What the original gets wrong
#
# **A program that cannot start panics the task, and the panic ends the batch.** A typo in
# its name will do (or a new server without ffmpeg on its `PATH`):

# %%
try:
    await original(clips, ffmpeg="ffmpg")
except SpawnError as error:
    print("the batch ended at the first error:", error.reason)

# %% [markdown]
# The first handle's error left `run` at once. The other five tasks failed too, but nobody
# was looking: in asyncio (as in tokio) their errors wait in the dropped handles. We collect
# them by hand so they do not surface later as "Task exception was never retrieved":

# %%
errors = await asyncio.gather(*handles, return_exceptions=True)
print(f"{len(errors) - 1} more tasks failed, unseen:", {type(e).__name__ for e in errors[1:]})

# %% [markdown]
# **One task per file, at once.** The loop spawns a task for every file before the first
# one finishes; the semaphore only makes them wait. A thousand files are a thousand tasks
# (and a million files a million). And an interrupt, here a timeout standing in for the ■
# button, stops the `for handle` loop, not the work:

# %%
copies = [videos / f"copy{n}.avi" for n in range(1000)]  # names only: ffmpeg fails fast
with anyio.move_on_after(0.5):                            # "Ctrl-C" after half a second
    await original(copies, say=lambda message: None)
alive = sum(not h.done() for h in handles)
print(len(handles), "tasks created up front; more than 900 still alive after the "
      "interrupt:", alive > 900)

# %% [markdown]
# Nothing stops them: they are not inside the block that was interrupted. We must cancel
# them by hand (the kit ends the running ffmpegs' process groups as they go):

# %%
for handle in handles:
    handle.cancel()
_ = await asyncio.gather(*handles, return_exceptions=True)
print("all done now:", all(h.done() for h in handles))

# %% [markdown]
# Two more problems wait in the design. ffmpeg writes straight to `clip0.mp4`, so an
# interrupt leaves a *half-written* `clip0.mp4` that looks finished; and the next run starts
# from scratch, or (without `-y`) ffmpeg asks "Overwrite? [y/N]" on a stdin that nobody
# reads. GNU parallel's `--resume` does better but keys jobs by *sequence number*: add one
# file at the front and it skips the new file and re-runs an old one.
#
# ## `process_files`: the same job, done so nothing is lost
#
# You give it the inputs and a **command callable**: for one input and a `part` path, the
# argument list that converts the input into `part`:

# %%
def transcode(clip, part):
    return [FFMPEG, "-nostdin", "-y", "-v", "error", "-i", clip,
            "-c:v", "libx264", "-preset", "ultrafast", part]

# %% [markdown]
# `output_for` names each final output (here in a folder of its own, which is created);
# `workers` is the limit. `progress=True` draws a bar here, and prints one plain line per
# file when the output is a log file instead of a terminal:

# %%
inputs = sorted(videos.glob("*.avi"))
out = work / "mp4"
report = await process_files(inputs, transcode, output_for=lambda p: out / f"{p.stem}.mp4",
                             workers=2, progress=True)
print(report)

# %% [markdown]
# The report has one `FileResult` per input, in input order, with a status and a reason
# in one sentence. The broken file failed; nothing else was lost:

# %%
for item in report:
    print(f"{item.input.name:<11} {item.status:<7} {item.reason}")

# %% [markdown]
# What did ffmpeg say? `stderr_tail` keeps the end of its stderr:

# %%
print(report.items[0].stderr_tail.splitlines()[-1])

# %% [markdown]
# ### Why a part file
#
# ffmpeg never wrote to `clip0.mp4`. It wrote to `.clip0.part.mp4` (hidden, in the same
# folder, with the same suffix, because ffmpeg picks the container from it), and only after
# ffmpeg exited 0 did the kit rename it with `os.replace`, which is atomic. So an `.mp4`
# that exists is always complete, and after a failure the part is deleted. The output folder
# holds exactly the six good files and no part file:

# %%
sorted(p.name for p in out.iterdir())

# %% [markdown]
# The report also carries the run's timeline: two workers, the broken file failing fast
# (red), never more than two at once:

# %%
plots.plot_timeline(report.timeline, title="six clips and a broken file, two workers")

# %% [markdown]
# ## Interrupt, then resume
#
# With `journal=`, every finished file is recorded (one JSON line, flushed and fsynced).
# We interrupt the batch after its third file. An interrupt arrives as a cancellation, so
# `on_result` (called with each result) cancels a scope, like the ■ button would:

# %%
journal = work / "journal.jsonl"
resumable = work / "resumable"
finished = []


def output_for(clip):
    return resumable / f"{clip.stem}.mp4"


with anyio.CancelScope() as interrupt:
    def stop_after_three(result):
        finished.append(result.input.name)
        if len(finished) == 3:
            interrupt.cancel()                               # the ■ button
    await process_files(clips, transcode, output_for=output_for, journal=journal,
                        workers=1, on_result=stop_after_three)
print("interrupted:", interrupt.cancelled_caught, "after", finished)

# %% [markdown]
# The running ffmpeg was terminated and its part file deleted. What is on disk is exactly
# what the journal says is done:

# %%
print("outputs:", sorted(p.name for p in resumable.iterdir()))
print("journal:", [(Path(r.input).name, r.status) for r in read_journal(journal)])

# %% [markdown]
# A journal line identifies a file by its path, size and modification time, and by the
# command (with the part path as a placeholder), never by its position:

# %%
record = read_journal(journal)[0]
stat = clips[0].stat()
print(Path(record.input).name, record.status, "| size and mtime_ns match the file:",
      (record.size, record.mtime_ns) == (stat.st_size, stat.st_mtime_ns))
print(["FFMPEG" if a == FFMPEG else Path(a).name if "/" in a else a for a in record.argv])

# %% [markdown]
# Run it again with the same journal, and **reversed**, to show that order does not matter:
# the three finished files are skipped (nothing spawned), only the rest run:

# %%
again = await process_files(clips[::-1], transcode, output_for=output_for, journal=journal,
                            workers=2)
print(again)
print("ran:", sorted(span.label for span in again.timeline.spans))

# %% [markdown]
# And the outputs are all there, each one a real H.264 video:

# %%
probes = await map_limited([[FFMPEG, "-hide_banner", "-i", p] for p in sorted(resumable.iterdir())],
                           check=False)
print(len(probes), "videos, all H.264:", all("Video: h264" in p.stderr for p in probes))

# %% [markdown]
# ## Halt policies
#
# By default (`halt="never"`) one failure never stops the rest. Sometimes a failure means
# every later file will fail too (a full disk, a wrong option) and waiting for them is a
# waste. `halt="first"` stops at the first failure: the running command (here the long
# clip) is terminated, and it and the unstarted files are `"halted"`:

# %%
mixed = [long_clip, videos / "broken.avi", *clips[:3]]
halted = await process_files(mixed, transcode, output_for=lambda p: work / "h1" / f"{p.stem}.mp4",
                             workers=2, halt="first")
for item in halted:
    print(f"{item.input.name:<11} {item.status:<7} {item.reason}")

# %% [markdown]
# `halt="30%"` stops once at least 30% of *all* files have failed: with six files, at the
# second failure. A file that does not exist counts as failed from the start (nothing is
# started for it), so here `broken.avi` is the second failure (one worker, so the order is
# easy to follow):

# %%
two_bad = [clips[0], videos / "broken.avi", clips[1], work / "missing.avi", clips[2], clips[3]]
share = await process_files(two_bad, transcode, output_for=lambda p: work / "h2" / f"{p.stem}.mp4",
                            workers=1, halt="30%")
print([item.status for item in share])
print(share.halt_reason)

# %% [markdown]
# The missing file's reason names it:

# %%
print(share.items[3].reason.replace(str(work), "<work>"))

# %% [markdown]
# ## The joblog
#
# GNU parallel's `--joblog` is a tab-separated file many scripts read (`sort -k4 -n` for
# the slowest jobs, `awk '$7 != 0'` for the failures). The report exports its run in that
# format, and `journal_joblog` exports a whole journal:

# %%
def clip_of(command):
    args = shlex.split(command)
    return Path(args[args.index("-i") + 1]).name

# %%
entries = read_joblog(report.joblog())
print(len(entries), "jobs, exit values:", [e.exitval for e in entries])
print("failed:", [clip_of(e.command) for e in entries if e.exitval != 0])

# %%
print(journal_joblog(journal).splitlines()[0])
print(len(read_joblog(journal_joblog(journal))), "records")

# %% [markdown]
# ## Recap
#
# - The original spawns a task per file, lets one `unwrap()` end the batch, and leaves its
#   tasks running after an interrupt. Keep work inside the block that starts it and collect
#   every outcome.
# - Write to a part file with the output's suffix and rename it with `os.replace` only
#   after exit 0: an output that exists is complete, a failure leaves nothing behind.
# - A journal keyed by *identity* (path, size, mtime, command) makes a re-run skip exactly
#   what is done, whatever the order; failed, changed and new files run again.
# - `halt="first"` / `"N%"` stop early and say why; `retries=` re-runs failures, never a
#   program that cannot start; `timeout=` bounds each attempt.
# - Progress in a notebook is a bar; in a CI log one plain line per file.
# - It all runs on asyncio and trio alike (the kit's tests run every case on both).
#
# ## Exercises
#
# **09.1** Complete `transcode_09(clip, part)`: the ffmpeg command (use `FFMPEG`) that
# converts `clip` to H.264 video (`-c:v libx264`) and writes it to `part`. The check runs it
# through `process_files` on two fresh clips and probes the results.

# %% tags=["raises-exception"]
def transcode_09(clip, part):
    raise NotImplementedError("return the list of arguments")

await exercises.check_transcode_command(transcode_09)

# %% jupyter={"source_hidden": true}
# One solution
def transcode_09(clip, part):
    return [FFMPEG, "-nostdin", "-y", "-i", clip, "-c:v", "libx264", part]

await exercises.check_transcode_command(transcode_09)

# %% [markdown]
# **09.2** A first run, with a journal, processed `a.avi`, `b.avi`, `c.avi`, `d.avi` in that
# order; `c.avi` failed, the others worked. Then `e.avi` was added at the *front* of the
# list, `b.avi` was edited, and `d.mp4` was deleted. Which files does the second run start
# a command for? The check does all this for real and compares.

# %% tags=["raises-exception"]
will_run_09 = NotImplemented
if will_run_09 is NotImplemented:
    raise NotImplementedError("assign the set of file names the second run starts")

await exercises.check_resume_prediction(will_run_09)

# %% jupyter={"source_hidden": true}
# One solution: new (e), changed (b), failed (c), output gone (d); a is skipped
will_run_09 = {"e.avi", "b.avi", "c.avi", "d.avi"}

await exercises.check_resume_prediction(will_run_09)
