"""Self-checking exercises for the notebooks.

Each ``check_*`` function takes what the learner built, runs it for real, and prints
either a short confirmation or what is wrong plus a hint (it never raises on a wrong answer,
so a learner can try again). One private module per notebook holds its checks.
"""

from ._common import ExerciseResult as ExerciseResult
from ._env import EnvironmentReport as EnvironmentReport
from ._env import environment_report as environment_report
from ._nb00 import ROSETTA_QUESTIONS as ROSETTA_QUESTIONS
from ._nb00 import check_first_command as check_first_command
from ._nb00 import check_rosetta as check_rosetta
from ._nb01 import check_failed_result as check_failed_result
from ._nb01 import check_run_all as check_run_all
from ._nb02 import check_count_sources as check_count_sources
from ._nb02 import check_first_match as check_first_match
from ._nb03 import check_echo_big as check_echo_big
from ._nb03 import check_shout as check_shout
from ._nb04 import check_exit_codes as check_exit_codes
from ._nb04 import check_pool_by_hand as check_pool_by_hand
from ._nb05 import check_feed as check_feed
from ._nb05 import check_start_order as check_start_order
from ._nb06 import check_cancel_all as check_cancel_all
from ._nb06 import check_partial_output as check_partial_output
from ._nb07 import check_resilient as check_resilient
from ._nb07 import check_worth_retrying as check_worth_retrying
from ._nb08 import HandClock as HandClock
from ._nb08 import check_breaker_class as check_breaker_class
from ._nb08 import check_drive as check_drive
from ._nb09 import check_resume_prediction as check_resume_prediction
from ._nb09 import check_transcode_command as check_transcode_command
from ._nb10 import check_make_frame as check_make_frame
from ._nb10 import check_open_frame as check_open_frame
from ._nb11 import check_find_gaps as check_find_gaps
from ._nb11 import check_stop_on_failure as check_stop_on_failure
from ._nb12 import check_decider as check_decider
from ._nb12 import check_probe as check_probe
from ._nb13 import check_count_lines as check_count_lines
from ._nb13 import check_first_failure as check_first_failure

__all__ = [
    "ROSETTA_QUESTIONS",
    "EnvironmentReport",
    "ExerciseResult",
    "HandClock",
    "check_breaker_class",
    "check_cancel_all",
    "check_count_lines",
    "check_count_sources",
    "check_decider",
    "check_drive",
    "check_echo_big",
    "check_exit_codes",
    "check_failed_result",
    "check_feed",
    "check_find_gaps",
    "check_first_command",
    "check_first_failure",
    "check_first_match",
    "check_make_frame",
    "check_open_frame",
    "check_partial_output",
    "check_pool_by_hand",
    "check_probe",
    "check_resilient",
    "check_resume_prediction",
    "check_rosetta",
    "check_run_all",
    "check_shout",
    "check_start_order",
    "check_stop_on_failure",
    "check_transcode_command",
    "check_worth_retrying",
    "environment_report",
]
