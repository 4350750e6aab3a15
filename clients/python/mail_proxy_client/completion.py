"""Shell completion for mail-proxy: commands, actions, options, their choices, profile names, and file names
where a file is expected.

`mail-proxy completion bash|zsh|fish` prints a short script for the shell; the script asks the command itself
what fits (`mail-proxy __complete WORD... CURRENT`), so completion always follows the installed version and
the profiles saved. Install it once:

  bash  mail-proxy completion bash > ~/.local/share/bash-completion/completions/mail-proxy
        (or add `source <(mail-proxy completion bash)` to ~/.bashrc)
  zsh   mail-proxy completion zsh > "${fpath[1]}/_mail-proxy"   (then start a new shell)
        (or add `source <(mail-proxy completion zsh)` to ~/.zshrc, after compinit)
  fish  mail-proxy completion fish > ~/.config/fish/completions/mail-proxy.fish
"""

from __future__ import annotations

import argparse
from pathlib import Path

SHELLS = ("bash", "zsh", "fish")
# Printed alone when a file name is expected: the script then lets the shell complete file names.
FILES = "__files__"

_BASH = r"""# bash completion for mail-proxy (mail-proxy completion bash)
_mail_proxy_complete() {
    local IFS=$'\n' candidates
    candidates=($(mail-proxy __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
    if [[ "${candidates[0]}" == "__files__" ]]; then
        compopt -o default 2>/dev/null
        COMPREPLY=()
    else
        COMPREPLY=("${candidates[@]}")
    fi
}
complete -o default -F _mail_proxy_complete mail-proxy
"""

_ZSH = r"""#compdef mail-proxy
# zsh completion for mail-proxy (mail-proxy completion zsh)
_mail_proxy() {
    local -a candidates
    candidates=("${(@f)$(mail-proxy __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
    if [[ "${candidates[1]}" == "__files__" ]]; then
        _files
    elif (( ${#candidates} )) && [[ -n "${candidates[1]}" ]]; then
        compadd -- "${candidates[@]}"
    fi
}
if [[ "$zsh_eval_context[-1]" == loadautofunc ]]; then
    _mail_proxy "$@"
else
    compdef _mail_proxy mail-proxy
fi
"""

_FISH = r"""# fish completion for mail-proxy (mail-proxy completion fish)
function __mail_proxy_complete
    set -l words (commandline -opc)
    set -e words[1]
    set -l candidates (mail-proxy __complete $words (commandline -ct) 2>/dev/null)
    if test "$candidates[1]" = "__files__"
        __fish_complete_path (commandline -ct)
    else if set -q candidates[1]
        printf '%s\n' $candidates
    end
end
complete -c mail-proxy -f -a '(__mail_proxy_complete)'
"""

SCRIPTS = {"bash": _BASH, "zsh": _ZSH, "fish": _FISH}


def script(shell: str) -> str:
    """The completion script for ``shell`` (one of ``SHELLS``)."""
    return SCRIPTS[shell]


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parsers of ``parser``'s commands (or actions), by name, in the order they were added."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def options(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(o for action in parser._actions for o in action.option_strings if o.startswith("--"))


def _option(parser: argparse.ArgumentParser, name: str) -> argparse.Action | None:
    return next((a for a in parser._actions if name in a.option_strings), None)


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs not in (0, "?") and not isinstance(action, argparse._HelpAction | argparse._VersionAction)


def _values(action: argparse.Action, current: str) -> list[str]:
    if action.choices:
        return [str(c) for c in action.choices if str(c).startswith(current)]
    return [FILES] if action.type is Path else []


def parser_candidates(parser: argparse.ArgumentParser, words: list[str], current: str) -> list[str]:
    """What may come next after ``words`` (the command and what follows it) when ``current`` is being typed."""
    node, expecting, given = parser, None, 0
    for word in words:
        if expecting is not None:
            expecting = None
            continue
        children = subcommands(node)
        if word in children:
            node, given = children[word], 0
        elif word.startswith("-"):
            action = _option(node, word.split("=", 1)[0])
            if action is not None and "=" not in word and _takes_value(action):
                expecting = action
        else:
            given += 1
    if expecting is not None:
        return _values(expecting, current)
    if current.startswith("-"):
        return [o for o in options(node) if o.startswith(current)]
    children = subcommands(node)
    if children:
        return [name for name in children if name.startswith(current)]
    positionals = [a for a in node._actions if not a.option_strings]
    if given < len(positionals):
        return _values(positionals[given], current)
    return [o for o in options(node) if o.startswith(current)]
