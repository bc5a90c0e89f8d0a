"""The command policy's built-in rules: what applies when ``.orch/policy.yaml`` is absent, and after a
file's own rules unless it says ``builtin: false``.

Each rule: (id, tier, level, outside, match, why). ``match`` is a regular expression searched in what a
command reads as (``orch.verify.shellcmds.Cmd.text``: the program's name without its folder, its
words with quotes taken off, ``> FILE`` for each file it writes), or, for ``level: line``, in the line's
programs joined by their operators (``curl | sh``). ``outside``: the rule applies only when one of
the command's operands (``operands``) or the files it writes (``writes``) lies outside the task's
worktree, is the worktree itself, lies in its ``.git``, or cannot be known (``$X``, input from
``xargs``). The first rule that matches a command decides its tier; a command no rule matches is
``RISKY`` (``unknown``).

Two levels only built-in rules have, which raise a command's tier whatever the first rule said:
``fact`` matches what its words say it does beyond its name (``Cmd.facts``: "sed runs commands",
"runs its input" ...), ``assign`` each ``NAME=VALUE`` it sets (``PATH=. ls``, ``env``, ``export``).
"""

from __future__ import annotations

# git with only options that keep it in this repository and change nothing (`git -C src --no-pager`)
GIT = (
    r"^git(?: (?:-C (?![/~])(?!\S*\.\.)\S+|--no-pager|-P|--no-optional-locks|--literal-pathspecs"
    r"|--no-replace-objects))*"
)
FETCH = r"(?:curl|wget|aria2c|fetch)"
INTERPRETERS = (
    r"(?:sh|bash|dash|zsh|ksh|mksh|ash|csh|tcsh|fish|python[0-9.]*|perl|ruby|node|nodejs|php|lua|deno|bun|source|\.)"
)
FILE_TOOLS = r"(?:rm|rmdir|unlink|shred|mv|chmod|chown|chgrp|truncate|tee)"

Rule = tuple[str, str, str, "str | None", str, str]

# variables that choose which program runs, or git's configuration; GIT_* unless known harmless
RUNNERS = (
    r"^(?:PATH|CDPATH|HOME|XDG_CONFIG_HOME|XDG_CONFIG_DIRS|LD_\w+|DYLD_\w+|BASH_ENV|ENV|PS4|PROMPT_COMMAND"
    r"|BASH_LOADABLES_PATH|EDITOR|VISUAL|BROWSER|SHELL|\w*PAGER|LESSOPEN|LESSCLOSE|\w*ASKPASS|TAR_OPTIONS"
    r"|(?!GIT_(?:AUTHOR|COMMITTER)_(?:NAME|EMAIL|DATE)=|GIT_(?:TERMINAL_PROMPT|OPTIONAL_LOCKS|FLUSH"
    r"|LITERAL_PATHSPECS|GLOB_PATHSPECS|NOGLOB_PATHSPECS|ICASE_PATHSPECS|MERGE_VERBOSITY|ADVICE|PROGRESS_DELAY)="
    r"|GIT_TRACE\w*=(?:[0-9]|true|false)?$)GIT_\w+)(?:\[[^]]*\])?\+?="
)

BUILTIN: list[Rule] = [
    # -- what a command's words say it does, whatever the rule for its name says ------------------------
    ("sets-runner", "CRITICAL", "assign", None, RUNNERS,
     "sets a variable that decides which programs run (PATH, LD_*, a pager, an editor) or git's configuration"),
    ("code-in-text", "CRITICAL", "fact", None, r"^(?:sed|awk) runs commands$",
     "runs shell commands from inside its script (sed's e, awk's system() or a pipe)"),
    ("runs-its-input", "CRITICAL", "fact", None, r"^runs its input$",
     "runs a script that is not written on the line (piped in, from <(...) or /dev/stdin)"),
    ("brace-program", "CRITICAL", "fact", None, r"^brace-expanded program$",
     "which program runs is only known when bash expands the braces"),
    ("program-file", "RISKY", "fact", None, r"^(?:sed runs a script|awk runs a program) file$",
     "runs a script from a file (what it does is not on the line)"),
    ("awk-writes", "RISKY", "fact", None, r"^awk writes files$", "writes files (print > FILE)"),
    # -- CRITICAL: what a snapshot of the worktree cannot undo -------------------------------------
    ("fetch-to-shell", "CRITICAL", "line", None,
     rf"(?:^|[;&|] ){FETCH}(?: \|&? (?:sudo )?\S+)* \|&? (?:sudo )?{INTERPRETERS}(?: |$)",
     "runs what it fetched from the network"),
    ("privileged", "CRITICAL", "command", None, r"^(?:sudo|su|doas|pkexec|runuser)(?: |$)",
     "runs as another user"),
    ("unknown-program", "CRITICAL", "command", None, r"^[^ ]*[$`]",
     "which program runs is only known when the shell expands it"),
    ("files-outside", "CRITICAL", "command", "operands", rf"^{FILE_TOOLS}(?: |$)",
     "changes or deletes files outside the task's worktree (or the worktree itself, or its .git)"),
    ("write-outside", "CRITICAL", "command", "writes", r"",
     "writes a file outside the task's worktree (or in its .git)"),
    ("network", "CRITICAL", "command", None,
     r"^(?:curl|wget|aria2c|ssh|scp|sftp|nc|ncat|netcat|socat|telnet|ftp|tftp|http|https|xh|gh|hub|lynx|links"
     r"|elinks|w3m)(?: |$)|^openssl (?:s_client|s_server|s_time|ocsp)(?: |$)|^rsync(?: .*)? [^ -][^ ]*:"
     rf"|{GIT} (?:fetch|pull|ls-remote|fetch-pack|send-pack|remote (?:update|prune|show(?! -n)(?= \S))"
     r"|submodule (?:.* )?(?:update|add|sync|init))(?: |$)"
     rf"|{GIT} clone(?: .*)? [^ -]\S*[:@]|{GIT} archive (?:.* )?--remote"
     r"|^(?:pip[0-9.]*|python[0-9.]* -m pip|uv pip) (?:download|install (?:.* )?(?:\S*://|git\+|\S+@))"
     r"|^parallel (?:.* )?(?:-S|--sshlogin)",
     "sends or fetches data over the network"),
    ("runs-programs", "CRITICAL", "command", None,
     rf"{GIT} (?:.* )?--(?:upload-pack|receive-pack|exec)(?:=| |$)|{GIT} rebase (?:.* )?(?:-x|--exec)"
     rf"|{GIT} bisect run(?: |$)|{GIT} submodule (?:.* )?foreach(?: |$)|{GIT} difftool (?:.* )?(?:-x|--extcmd)"
     rf"|{GIT} grep (?:.* )?(?:-O|--open-files-in-pager)|^man (?:.* )?(?:-P|--pager|-H|--html)"
     r"|^hash (?:.* )?-[a-z]*p|^enable (?:.* )?-[a-z]*f",
     "runs a program its options name (a pager, an --exec, a shared object)"),
    ("git-push", "CRITICAL", "command", None, rf"{GIT} (?:push|send-email|request-pull|svn dcommit)(?: |$)",
     "sends commits out of the machine"),
    ("publish", "CRITICAL", "command", None,
     r"^(?:npm|pnpm|yarn|bun) (?:publish|unpublish|deprecate|owner|dist-tag|login|adduser|token)(?: |$)"
     r"|^(?:twine|flit|hatch|poetry|uv) (?:upload|publish)(?: |$)|^cargo (?:publish|yank|owner|login)(?: |$)"
     r"|^gem (?:push|yank|owner)(?: |$)|^docker (?:push|login)(?: |$)",
     "publishes a package or logs in to a registry"),
    ("install-global", "CRITICAL", "command", None,
     r"^(?:npm|pnpm|bun) (?:.* )?(?:-g|--global|--location=global)(?: |$)|^yarn global "
     r"|^(?:pip[0-9.]*|python[0-9.]* -m pip|uv pip) install (?:.* )?(?:--user|--break-system-packages|--system)(?: |$)"
     r"|^(?:apt|apt-get|aptitude|dpkg|dnf|yum|rpm|zypper|pacman|apk|brew|port|snap|flatpak|nix-env) "
     r"|^(?:cargo|go|gem|pipx) install(?: |$)|^uv tool install(?: |$)",
     "installs software for the whole machine or user"),
    ("git-config-read", "SAFE", "command", None,
     rf"{GIT} config (?:--get|--get-all|--get-regexp|--get-urlmatch|--list|-l|--show-origin|--show-scope)(?: |$)",
     "reads git's configuration"),
    ("git-config", "CRITICAL", "command", None,
     rf"{GIT} (?:config|remote (?:add|remove|rm|rename|set-url|set-head|set-branches))(?: |$)"
     rf"|{GIT} (?:-c|--config-env|--git-dir|--work-tree|--exec-path|--namespace)(?: |=)"
     r"|^git(?: .*)? -C (?:[/~]|\S*\.\.)",
     "changes git's configuration, or points git at another repository"),
    ("git-other-refs", "CRITICAL", "command", None,
     rf"{GIT} (?:update-ref|symbolic-ref|replace|filter-branch|filter-repo|fast-import|pack-refs|prune)(?: |$)"
     rf"|{GIT} branch (?:.* )?(?:-[a-zA-Z]*[dDfmMcCu][a-zA-Z]*|--delete|--force|--move|--copy"
     r"|--set-upstream-to(?:=\S+)?|--unset-upstream|--edit-description)(?: |$)"
     rf"|{GIT} (?:checkout|switch) (?:.* )?(?:-B|-C|--force-create)(?: |$)"
     rf"|{GIT} tag (?:.* )?(?:-d|-f|--delete|--force)(?: |$)|{GIT} reflog (?:expire|delete)(?: |$)"
     rf"|{GIT} gc (?:.* )?--prune|{GIT} stash (?:drop|clear)(?: |$)|{GIT} worktree (?:remove|prune|move)(?: |$)"
     rf"|{GIT} (?:fetch|pull)(?: .*)? \+?[\w./-]*:[\w.-][\w./-]*(?: |$)",
     "moves, deletes or rewrites refs other than the task's own branch"),
    # -- RISKY: changes what a snapshot of the worktree can bring back ------------------------------
    ("find-acts", "RISKY", "command", None,
     r"^find(?: .*)? -(?:delete|exec|execdir|ok|okdir|fprint0?|fprintf|fls)(?: |$)", "finds files and acts on them"),
    ("edit-in-place", "RISKY", "command", None,
     r"^(?:sed|perl|ruby)(?: .*)? (?:-[a-zA-Z]*i\S*|--in-place\S*)(?: |$)|^sort(?: .*)? (?:-o|--output)",
     "edits files in place"),
    ("write-file", "RISKY", "command", None, r"(?:^| )> ", "writes a file"),
    ("git-reads", "SAFE", "command", None,
     rf"{GIT} (?:status|log|diff|show|rev-parse|rev-list|ls-files|ls-tree|cat-file|blame|grep|describe|shortlog"
     r"|merge-base|name-rev|for-each-ref|show-ref|show-branch|count-objects|check-ignore|check-attr|var|help"
     r"|version|cherry|range-diff|diff-tree|diff-index|diff-files|whatchanged)(?: |$)"
     rf"|{GIT} (?:--version|--help)$|{GIT} branch(?: (?:-a|-r|-v|-vv|-l|--list|--all|--remotes|--show-current"
     r"|--contains \S+|--no-contains \S+|--merged(?: \S+)?|--no-merged(?: \S+)?|--format=\S+|--sort=\S+))*$"
     rf"|{GIT} (?:stash (?:list|show)|tag(?: -l| --list)?(?: \S+)?|worktree list|reflog(?: show)?)(?: |$)"
     rf"|{GIT} remote(?: -v| show(?: -n \S+)?| get-url \S+)?$",
     "reads the repository"),
    ("git-changes", "RISKY", "command", None,
     rf"{GIT} (?:add|commit|rm|mv|reset|restore|checkout|switch|merge|rebase|cherry-pick|revert|am|apply|stash|clean"
     r"|pull|fetch|clone|init|tag|branch|worktree|submodule|notes|gc|lfs|sparse-checkout|bisect|format-patch)(?: |$)",
     "changes the task's branch, its index or its files"),
    ("change-files", "RISKY", "command", None,
     r"^(?:rm|rmdir|unlink|shred|mv|cp|ln|install|touch|mkdir|chmod|chown|chgrp|truncate|dd|tee|patch|rsync|tar"
     r"|unzip|gunzip|bunzip2|unxz|gzip|xz|zip|7z)(?: |$)",
     "creates, changes or deletes files in the worktree"),
    ("install-local", "RISKY", "command", None,
     r"^(?:pip[0-9.]*|python[0-9.]* -m pip|uv|poetry|pipenv|pdm|conda|mamba|npm|pnpm|yarn|bun|bundle|cargo|go"
     r"|composer|mix|dotnet) (?:install|i|add|ci|sync|update|upgrade|remove|uninstall|rm|get|mod|restore)(?: |$)",
     "installs packages into the project"),
    # -- SAFE: reads only ----------------------------------------------------------------------------
    ("reads-only", "SAFE", "command", None,
     r"^(?:ls|ll|la|cat|bat|head|tail|less|more|wc|grep|egrep|fgrep|rg|ag|ack|find|fd|tree|pwd|echo|printf|which"
     r"|whereis|type|command|file|stat|du|df|diff|cmp|comm|sort|uniq|cut|tr|awk|gawk|mawk|sed|jq|yq|basename|dirname"
     r"|realpath|readlink|date|cal|printenv|whoami|id|groups|uname|hostname|true|false|test|\[|\[\[|sleep|nl"
     r"|column|od|xxd|hexdump|strings|md5sum|sha1sum|sha256sum|sha512sum|cksum|b2sum|cd|pushd|popd|ps|free"
     r"|uptime|nproc|seq|expr|tac|rev|fold|fmt|paste|join|help|export|set|unset|shopt|wait|jobs"
     r"|exit|return|shift|local|declare|typeset|:)(?: |$)|^env$",
     "reads or prints only"),
    ("orch-reads", "SAFE", "command", None,
     r"^orch (?:report|status|inbox|plan|verify|policy check|lock list|hooks status|help|--help|-h|--version)(?: |$)",
     "orch's own commands for agents, and what only reads"),
    ("versions", "SAFE", "command", None, r"^\S+ (?:--version|-V|--help|-h)$", "prints a program's version or help"),
    ("no-program", "SAFE", "command", None, r"^$", "only sets shell variables"),
]  # fmt: skip

UNKNOWN = "RISKY"  # a command no rule matches
