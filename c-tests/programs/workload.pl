#!/usr/bin/perl
# Allocator workload for scripts/test-programs.sh (perl family).
# Deterministic (own LCG, sorted key order, PERL_HASH_SEED set by the
# harness); prints digests only.
use strict;
use warnings;
use Digest::MD5 qw(md5_hex);

my $seed = 12345;
sub rnd { $seed = ($seed * 1103515245 + 12345) % 2147483648; return $seed % $_[0]; }
sub word {
    my ($lo, $hi) = @_;
    my $n = $lo + rnd($hi - $lo + 1);
    return join '', map { chr(97 + rnd(26)) } 1 .. $n;
}

# 1. hash churn: insert / delete / grow values
my %h;
my $ops = 0;
for my $r (1 .. 200_000) {
    my $k = word(2, 6);
    my $op = rnd(10);
    if ($op < 6) { $h{$k} = [ map { rnd(1000) } 1 .. rnd(12) ]; }
    elsif ($op < 8) { delete $h{$k}; }
    else { push @{ $h{$k} }, $k x rnd(40); }
    $ops++;
}
my $hd = Digest::MD5->new;
for my $k (sort keys %h) { $hd->add($k, ':', join(',', @{ $h{$k} }), ';'); }
printf "hash keys=%d ops=%d md5=%s\n", scalar(keys %h), $ops, $hd->hexdigest;

# 2. array churn: splice, push/shift, big joins
my @a;
for my $i (1 .. 150_000) {
    push @a, sprintf("%08d-%s", rnd(100_000_000), word(1, 10));
    if (@a > 5000) {
        my $pos = rnd(scalar @a);
        splice(@a, $pos, rnd(50));
    }
    shift @a if rnd(7) == 0;
}
my $joined = join("|", @a);
printf "array n=%d len=%d md5=%s\n", scalar(@a), length($joined), md5_hex($joined);

# 3. sort: numeric, string, custom multi-key (Schwartzian transform)
my @nums = map { rnd(1_000_000) - 500_000 } 1 .. 200_000;
my @sn = sort { $a <=> $b } @nums;
my @ss = sort @a;
my @st = map { $_->[1] }
         sort { $a->[0] <=> $b->[0] or $a->[1] cmp $b->[1] }
         map { [ length($_), $_ ] } keys %h;
printf "sort num=%s str=%s custom=%s\n",
    md5_hex(join ',', @sn), md5_hex(join ',', @ss), md5_hex(join ',', @st);

# 4. regex: captures, global matches, substitutions, split
my @lines;
for my $i (1 .. 60_000) {
    push @lines, sprintf("%s [%s] id=%d path=/%s/%s.%s took=%.3fms",
        (qw(GET POST PUT DELETE))[rnd(4)], word(4, 8), rnd(1_000_000),
        word(2, 8), word(2, 10), (qw(html json png txt))[rnd(4)], rnd(100_000) / 7);
}
my (%meth, %ext, $took);
my $subs = Digest::MD5->new;
for my $l (@lines) {
    if ($l =~ m{^(\w+) \[(\w+)\] id=(\d+) path=/(\w+)/(\w+)\.(\w+) took=([\d.]+)ms$}) {
        $meth{$1}++;
        $ext{$6} += $3 % 13;
        $took += $7;
    }
    (my $t = $l) =~ s/([aeiou])(\w)/$2$1/g;
    $t =~ tr/a-z/A-Z/;
    $subs->add($t);
    my @f = split /[\s=\/.]+/, $l;
    $ops += @f;
    my @all = ($l =~ /(\d+)/g);
    $ops += @all;
}
printf "regex meth=%s ext=%s took=%.3f ops=%d subs=%s\n",
    join(',', map { "$_:$meth{$_}" } sort keys %meth),
    join(',', map { "$_:$ext{$_}" } sort keys %ext),
    $took, $ops, $subs->hexdigest;

# 5. sprintf / string building, nested structures, freeing big structures
my $tree = {};
for my $i (1 .. 80_000) {
    my @path = map { word(1, 2) } 1 .. 3;
    my $n = $tree;
    $n = ($n->{$_} //= {}) for @path;
    $n->{leaf} .= sprintf("%x.%o.%e;", $i, $i * 3, $i / 7);
}
my $walk;
my $buf = '';
$walk = sub {
    my ($n, $depth) = @_;
    for my $k (sort keys %$n) {
        if (ref $n->{$k}) { $buf .= ('  ' x $depth) . "$k\n"; $walk->($n->{$k}, $depth + 1); }
        else { $buf .= length($n->{$k}) . "\n"; }
    }
};
$walk->($tree, 0);
undef $walk;
printf "tree len=%d md5=%s\n", length($buf), md5_hex($buf);
undef $tree;
my $big = 'x' x 50_000_000;
substr($big, 1000, 10) = 'yyyyyyyyyy';
printf "big len=%d md5=%s\n", length($big), md5_hex($big);
