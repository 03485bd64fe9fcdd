#!/bin/bash
# Allocator workload for scripts/test-programs.sh (git family).
# Runs in an empty working directory; every commit has a fixed identity and
# date, so every hash printed is the same on every run and every machine
# with the same git version.  All output that matters goes to stdout.
set -euo pipefail

export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME="Test Author" GIT_AUTHOR_EMAIL="author@example.com"
export GIT_COMMITTER_NAME="Test Committer" GIT_COMMITTER_EMAIL="committer@example.com"
export GIT_TERMINAL_PROMPT=0 GIT_PAGER=cat PAGER=cat

t=1700000000
tick() {
    t=$((t + 3600))
    export GIT_AUTHOR_DATE="@$t +0000" GIT_COMMITTER_DATE="@$t +0000"
}

git init -q -b main repo
cd repo
git config core.autocrlf false
git config gc.auto 0
git config pack.threads 2

# A pseudo-random but deterministic file tree (LCG in bash).
seed=7
rnd() { seed=$(( (seed * 1103515245 + 12345) % 2147483648 )); r=$(( seed % $1 )); }

write_file() { # path nlines salt
    local path=$1 n=$2 salt=$3 i
    mkdir -p "$(dirname "$path")"
    {
        for ((i = 0; i < n; i++)); do
            echo "line $i of $path salt $salt value $(( (i * 2654435761 + salt) % 1000003 ))"
        done
    } > "$path"
}

# initial import: 300 files in 20 directories
for ((f = 0; f < 300; f++)); do
    write_file "src/dir$((f % 20))/file$f.txt" $((20 + f % 50)) "$f"
done
tick
git add -A
git commit -q -m "initial import"

# 40 commits on main, each touching a few files
for ((c = 1; c <= 40; c++)); do
    for ((k = 0; k < 6; k++)); do
        rnd 300; f=$r
        write_file "src/dir$((f % 20))/file$f.txt" $((20 + (f + c) % 60)) "$((c * 1000 + k))"
    done
    if ((c % 10 == 0)); then git rm -q "src/dir$((c % 20))/file$c.txt"; fi
    tick
    git add -A
    git commit -q -m "main change $c" -m "Touches six files; deterministic salt $c."
done
git tag -a v1 -m "version 1"

# a feature branch with its own history, then a non-conflicting merge
git checkout -q -b feature HEAD~15
for ((c = 1; c <= 15; c++)); do
    write_file "feature/part$c.txt" $((100 + c)) "$((c * 77))"
    write_file "src/dir$((c % 20))/extra$c.txt" 30 "$c"
    tick
    git add -A
    git commit -q -m "feature step $c"
done
git checkout -q main
tick
git merge --no-ff -m "merge feature" feature
git branch -q topic v1~5
git checkout -q topic
for ((c = 1; c <= 5; c++)); do
    echo "topic $c" >> "topic.txt"
    tick
    git add topic.txt
    git commit -q -m "topic $c"
done
git checkout -q main
tick
git merge --no-ff -m "merge topic" topic

echo "== log"
git log --stat --format='%H %an %ad %s' --date=iso-strict main | sed -n '1,400p'
git log --graph --oneline --all | tail -50
echo "== rev-list"
git rev-list --all --objects | sort | sha256sum
git rev-parse HEAD 'HEAD^{tree}' v1 feature topic
echo "== diff"
git diff --stat v1 main | tail -5
git diff v1~10 main -- src | sha256sum
git blame -s src/dir3/file3.txt | sed -n '1,20p'
echo "== grep"
git grep -c "salt 3" main -- src | sed -n '1,20p'
echo "== gc"
git gc -q --aggressive --prune=now
git count-objects -v | grep -E '^(count|in-pack|packs|garbage):'
git fsck --full --strict --no-dangling && echo "fsck ok"
git verify-pack -v .git/objects/pack/pack-*.idx | grep -cE '^[0-9a-f]{40} (commit|tree|blob|tag)'
echo "== archive"
git archive --format=tar main | tar -tf - | sort | sha256sum
git archive --format=tar main | sha256sum
