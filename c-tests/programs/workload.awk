# Allocator workload for scripts/test-programs.sh (awk family; POSIX awk,
# so it runs on mawk and gawk alike).  Input: the generated sort input,
# lines "NUMBER,WORD,FLOAT,TEXT".  Output: order-independent digests only.
function h(s,    i, x) {
    # cheap string hash, folded into 24 bits to stay exact in a double
    x = length(s)
    for (i = 1; i <= length(s); i += 7) x = (x * 31 + index("abcdefghijklmnopqrstuvwxyz0123456789", substr(s, i, 1))) % 16777213
    return x
}
BEGIN { FS = "," }
{
    n++
    count[$2]++
    sum[$2] += $1
    if (length(longest[$2]) < length($4)) longest[$2] = $4
    cat[$1 % 97] = cat[$1 % 97] substr($4, 1, 3)
    if (length(cat[$1 % 97]) > 4000) { digest += h(cat[$1 % 97]); delete cat[$1 % 97] }
    nf = split($4, parts, / +/)
    for (i = 1; i <= nf; i++) words[parts[i]]++
    line = $0
    subs += gsub(/[aeiou]+/, "<&>", line)
    subs += gsub(/[0-9]+/, "#", line)
    t = toupper(line)
    digest = (digest + h(t)) % 1000000007
    key = sprintf("%s/%05d/%.2f", substr($2, 1, 2), $1 % 1000, $3)
    seen[key] = NR
    if (NR % 50000 == 0) {
        for (k in seen) { live++; delete seen[k] }
    }
}
END {
    for (k in count) { groups++; gsum = (gsum + count[k] * h(k) + sum[k]) % 1000000007 }
    for (k in longest) lsum = (lsum + length(longest[k]) * h(k)) % 1000000007
    for (k in words) { nwords++; wsum = (wsum + words[k] * h(k)) % 1000000007 }
    for (k in seen) live++
    printf "lines %d groups %d gsum %d lsum %d\n", n, groups, gsum, lsum
    printf "words %d wsum %d subs %d live %d digest %d\n", nwords, wsum, subs, live, digest
}
