#!/bin/bash
# Allocator workload for scripts/test-programs.sh (bash family): bash
# allocates every word, array element and variable with malloc (Debian
# builds it without its own malloc).  Deterministic: bash's RANDOM with a
# fixed seed, sorted output.
set -euo pipefail
RANDOM=4242

declare -A assoc
declare -a arr
declare -i ops=0
for ((i = 0; i < 60000; i++)); do
    k="k$((RANDOM % 5000))"
    case $((RANDOM % 4)) in
        0|1) assoc[$k]+="${k}:$i," ;;
        2) unset "assoc[$k]" ;;
        3) arr+=("${k//k/key-}-$i") ;;
    esac
    if ((${#arr[@]} > 3000)); then
        arr=("${arr[@]:1500}")
    fi
    ops+=1
done
total=0
for k in "${!assoc[@]}"; do total=$((total + ${#assoc[$k]})); done
echo "assoc ${#assoc[@]} total $total arr ${#arr[@]} ops $ops"
printf '%s\n' "${!assoc[@]}" | sort | cksum
printf '%s\n' "${arr[@]}" | cksum

# string building and parameter expansion
s=""
for ((i = 0; i < 8000; i++)); do
    printf -v piece '%05d-%x;' "$i" "$((i * 7919))"
    s+=$piece
done
echo "string ${#s} $(printf '%s' "${s//;/$'\n'}" | sort -r | head -c 100000 | cksum)"
up=${s^^}
mid=${s:1000:50}
rep=${s//0/zero}
echo "expand ${#up} $mid ${#rep}"

# command substitution (fork + exec under the preload) and read loops
sum=0
for ((i = 0; i < 150; i++)); do
    out=$(printf '%d\n' $((i * 3)) $((i * 5)) | sort -n | tail -1)
    sum=$((sum + out))
done
echo "subst $sum"
n=0
while IFS=, read -r _ b _ d; do
    n=$((n + ${#b} + ${#d}))
done < <(head -n 20000 "$IN/lines.txt")
echo "read $n"
