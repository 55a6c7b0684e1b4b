#!/bin/sh
# rename-1.0.sh DIR - the pure renames of API 1.0 (issue 13): names only, no
# argument changes. Idempotent; run it on any branch written against 0.x. The
# record of old -> new is CHANGES.md; this script is its mechanical half.
#
# Scope: C sources and headers, CMake files and Markdown under DIR (src/,
# include/, tests/, examples/, bench/*.c, fuzz/, docs/, README.md). Left out on
# purpose: this script and tests/test_api_conventions.c (it names the old
# names to refuse them). In CHANGES.md only lines without "->" change: the
# old -> new records keep the old names, an "Added" line gets the new ones.
set -eu

dir=${1:?usage: rename-1.0.sh DIR}
cd "$dir"

files=$(find . -name .git -prune -o -name 'build' -prune -o -type f \
    \( -name '*.c' -o -name '*.h' -o -name '*.md' -o -name 'CMakeLists.txt' \
       -o -name '*.cmake' -o -name '*.in' \) -print |
    grep -v -e '^\./CHANGES\.md$' -e '^\./tools/' -e 'test_api_conventions' |
    sort)

[ -n "$files" ] || exit 0

# Word-boundary renames. A name counts only when no identifier character
# comes before it: so mp_obj_dict_*, mp_manager_dict*, mp__list_* and words
# such as mp_listener are never touched; mp_list_node is excluded by name.
# Each rule maps an old name (alone or as a prefix followed by _) to the new
# one; the new names do not match the old patterns, so a second run changes
# nothing.
# shellcheck disable=SC2086
rules='
    # Manager proxies: named after Python proxy classes (DictProxy, ListProxy,
    # AcquirerProxy for Lock/RLock, the queue proxy).
    s/(?<![A-Za-z0-9_])mp_dict(?=_[A-Za-z0-9]|(?![A-Za-z0-9_]))/mp_dictproxy/g;
    s/(?<![A-Za-z0-9_])mp_list(?!_node)(?=_[A-Za-z0-9]|(?![A-Za-z0-9_]))/mp_listproxy/g;
    s/(?<![A-Za-z0-9_])mp_mlock(?=_[A-Za-z0-9]|(?![A-Za-z0-9_]))/mp_lockproxy/g;
    s/(?<![A-Za-z0-9_])mp_mqueue(?=_[A-Za-z0-9]|(?![A-Za-z0-9_]))/mp_queueproxy/g;
    s/(?<![A-Za-z0-9_])MP_LIST_END(?![A-Za-z0-9_])/MP_LISTPROXY_END/g;
'
perl -pi -e "$rules" $files
if [ -f CHANGES.md ]; then
    perl -pi -e "next if /->/; $rules" CHANGES.md
fi
