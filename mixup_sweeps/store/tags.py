"""Every MLflow tag and artifact name the harness writes, once: what the jobs, the sweepers and the report agree on.

A name here is read back by another part (a resumed job, the report, `liveness`, a sweep continued on another
machine), so it is part of the store's format: renaming one breaks stores written before. The groups below say
who writes each.
"""

# The experiment -----------------------------------------------------------------------------------------------
# MLflow 3's experiment kind: the UI opens a model-training experiment on its runs, not on the GenAI view
EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"

# A job's run ------------------------------------------------------------------------------------------------
NESTED = "mlflow.parentRunId"  # MLflow's own: the UI nests a child under its sweep's parent
FINGERPRINT = "config_fingerprint"  # what a run computes (config.config_fingerprint): skip, resume, reuse
SWEEP_ID = "sweep_id"  # on a parent and on each of its children
GIT_COMMIT = "git_commit"  # the harness's commit, `-dirty` with local changes
ERROR, FAILURE_REASON = "error", "failure_reason"  # why a run ended FAILED or KILLED
INTERRUPTED_AT = "interrupted_at"  # a resumed run's earlier stops, one line each: time, reason, error
PACK_MEMBERS = "pack_members"  # on a JAX run: how many jobs its packed program trained (1: alone)
INIT_WEIGHTS_SHA256 = "init_weights_sha256"
DATASET_DIR, DATASET_SHA256 = "dataset.dir", "dataset.sha256."  # the file or folder read; + file name
DATASET_ORIGIN = "dataset.origin"  # where the published files come from (a URL), or "your own files"
REUSED_IN_SWEEP = "reused_in_sweep."  # + sweep_id: a FINISHED run of another sweep that this sweep skipped to
ACCELERATOR = "accelerator"

# Which process owns a run (`liveness`) -----------------------------------------------------------------------
HOST, PID, PROCESS_START = "host", "pid", "process_start"
HEARTBEAT = "heartbeat"  # epoch seconds of the owner's last sign of life: at start and after every epoch
CLAIM = "claim"  # `<subject>/<generation>`: the claim (`store.claims`) under which this run was opened or resumed

# A sweep's parent run (`multirun.parent`) --------------------------------------------------------------------
PARENT = "sweep_parent"  # "true" on a sweep's parent run, which has no epochs to beat with
SWEEP_DIR = "sweep_dir"  # how a job finds its sweep's parent: same absolute sweep directory (the first session's)
SWEEP_DIR_OF = "sweep_dir."  # + a hash of the directory: one per session (process) that runs the sweep
PARTICIPANT = "participant."  # + host.pid: a process working on the sweep now (JSON: host, pid, process_start)
SWEEP_FINGERPRINT = "sweep_fingerprint"  # the same sweep command again -> the same parent (resume)
SWEEP_KEYS = "sweep_keys"
SWEEP_OVERRIDES = "sweep_overrides"
SEEDS_UNTIL, SEEDS_UNTIL_RESULT = "seeds_until", "seeds_until_result"  # `until` settings, per group outcome
RACE, RACE_RESULT = "race", "race_result"  # the race's settings and outcome (`racing.to_record`)
SEARCH, SEARCH_RESULT = "search", "search_result"  # a search's settings and its answer's lines (JSON)
ANSWER = "answer"  # the report's answer, one verdict after another (`report.documents`)

REGISTERED_MODEL = "registered_model"  # `<name>/<version>@<alias>`: the network the sweep registered

# A registered model version (`store.registry`): which sweep registered it, why (SWEEP_ID is on it too) ----------
WINNER_ALIAS, WINNER_GROUP, WINNER_WHY = "alias", "group", "decided_by"
WINNER_PARENT = "sweep_parent_run"

# A search's jobs (`multirun.search`) -------------------------------------------------------------------------
TRIAL, CONFIRM = "search_trial", "search_confirm"  # the trial number, or which side of the confirmation
SEARCH_STUDY = "search_study"  # the Optuna study a trial's job belongs to
TRIAL_STATE = "search_trial_state"  # the trial's state once told: COMPLETE, PRUNED, FAIL
TRIAL_VALUE = "trial_value"  # metric: the trial's objective (the mean over its seeds), on each of its runs
PRUNED, PRUNED_EPOCH = "pruned", "pruned_epoch"  # a run the search's pruner stopped (KILLED in MLflow)

# Artifacts --------------------------------------------------------------------------------------------------
INITIAL_WEIGHTS = "initial_weights"  # folder of the sweep parent (and of each run) holding the shared weights
SEARCH_RECORD = "search/search.json"  # on a search's parent: every trial, the best, the confirmation
