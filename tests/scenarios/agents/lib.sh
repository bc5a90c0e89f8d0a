# Sourced by every scenario agent (run as `sh AGENT.sh` by the shell preset, in its task worktree).
#
# What an agent tried outside its worktree goes to its worktree's private git folder (never committed,
# writable inside the box too): `scenario-attempt` gets "ok" or "refused" for each `attempt`, and
# `scenario-commits` the id of each commit it made. SCENARIO_CANARY is the file a planted program
# creates when some git runs it.
set -u
GITDIR=$(git rev-parse --absolute-git-dir)  # before any planted config can run
MAIN=$(dirname "$ORCH_HOME")  # the person's checkout
# The repository's shared git folder (in the box, the task's own git folder is a shadow of it)
COMMON=$(git -C "$MAIN" rev-parse --path-format=absolute --git-common-dir)
: "${SCENARIO_CANARY:?}"

attempt() {  # run "$@", the escape itself; record whether it worked
    if "$@" 2>>"$GITDIR/scenario-attempt.err"; then
        echo ok >>"$GITDIR/scenario-attempt"
    else
        echo refused >>"$GITDIR/scenario-attempt"
    fi
}

save() {  # commit everything as "$1"; a refusing pre-commit hook leaves it for the supervisor to commit
    git add -A
    if git commit -q "$@" 2>>"$GITDIR/scenario-commit.err"; then
        git rev-parse HEAD >>"$GITDIR/scenario-commits"
    fi
}

plant() {  # git config KEY VALUE in the shared config, last: the agent's own git would run it too
    attempt git config --file "$COMMON/config" "$1" "$2"
}
