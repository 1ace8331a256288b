# Sourced by the sbatch scripts of scripts/slurm/: run a training step so that the job survives time limits
# and preemption, and is requeued until the run has finished.
#
#   run_requeueable srun torchrun ... train_crossmodal.py ... --resume auto
#
# - The sbatch scripts ask for `--signal=B:TERM@120`: 120 s before the time limit SLURM sends SIGTERM to this
#   batch shell. The trap below forwards it to the step (srun forwards signals to its tasks, torchrun to its
#   workers). Training finishes the step in progress, keeps its last complete training state (the last
#   finished epoch) and exits with status 75 (PREEMPTED_EXIT in util/run.py).
# - On preemption SLURM sends SIGTERM to every process of the job itself (then SIGKILL after the partition's
#   GraceTime); the same happens.
# - Status 75, or a SIGTERM received here: `scontrol requeue` puts the job back in the queue. The requeued job
#   runs this same script, and `--resume auto` continues the run (or exits 0 if it had finished).
# - Any other status is the job's status (0: finished; other: an error, see the log; not requeued).
PREEMPTED_EXIT=75

run_requeueable() {
    local child status signalled=0
    trap 'signalled=1; echo "$(date "+%F %T") SIGTERM: stopping the training step (it finishes its step)"; \
          kill -TERM "$child" 2>/dev/null' TERM
    "$@" &
    child=$!
    # `wait` returns early when a trapped signal arrives: wait again until the step has ended.
    while true; do
        wait "$child"
        status=$?
        kill -0 "$child" 2>/dev/null || break
    done
    trap - TERM
    if [ "$status" -eq "$PREEMPTED_EXIT" ] || [ "$signalled" -eq 1 ]; then
        echo "$(date "+%F %T") training stopped (status $status): requeueing job $SLURM_JOB_ID"
        scontrol requeue "$SLURM_JOB_ID"
        return 0
    fi
    return "$status"
}
