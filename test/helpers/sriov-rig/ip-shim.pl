#!/usr/bin/perl
# The `ip` of the SR-IOV test rig (see rig.ts). No SR-IOV NIC exists on the test machines, so this
# stands in for the one thing a veth cannot do: be a PF with a VF table. It is put in front of the
# real ip in PATH for the plugin process only, and:
#  - keeps each rig PF's VF table (MAC, VLAN/QoS/protocol, rates, spoof check, trust, link state,
#    query_rss) and applies `ip link set dev PF vf N ...` to it with iproute2 6.1's argument checks,
#    messages and exit codes (255 for a bad argument, 1 for a refused one in batch mode, 2 for a
#    kernel refusal outside it), the kernel's own checks (vlan > 4095, qos > 7) and those of a generic
#    PF driver (VF index beyond sriov_numvfs, a group MAC, QoS without a VLAN, min rate above max
#    rate: EINVAL). It does not reproduce a VF driver's reaction to a new admin MAC (iavf resets the
#    VF and its netdev takes the MAC): the plugin sets the netdev's MAC itself, as it must anyway;
#  - prints the table into `ip [-j] link show` / `ip -d addr show` of the PF exactly where iproute2
#    6.1 does (after stats, before altnames and addresses), in its key order and formats;
#  - keeps the rig's sysfs honest after anything that may rename a VF netdev or move it between
#    namespaces: <vf>/net/ lists the netdev's current name while it is in the host netns and nothing
#    while it is elsewhere, as sysfs does (the VF netdevs, veth ends, carry the alias
#    "underlay-rig-vf <pci>" so they can be found whatever their name);
#  - hands everything else to the real ip, unchanged.
# Perl (always on Debian) rather than Node: this runs several times per ADD, and a Node start-up
# (~40 ms) would swamp what the benchmark measures.
use strict;
use warnings;

my $rig = $0;
$rig =~ s{/[^/]+/[^/]+$}{};
my %conf = read_conf("$rig/shim/config");
my $REAL = $conf{realip};
my $SYSFS = $conf{sysfs};
my %PF = map { $_ => 1 } split /,/, ($conf{pfs} // '');
my %VF_OF_PF = map { $_ => [split /,/, $conf{"vfs.$_"}] } keys %PF;   # PF name => VF PCI addresses by index
my @ALL_VFS = map { @{$VF_OF_PF{$_}} } sort keys %PF;

sub read_conf {
  my ($path) = @_;
  open(my $fh, '<', $path) or die "ip shim: cannot read $path: $!\n";
  my %c;
  while (<$fh>) { chomp; my ($k, $v) = split / /, $_, 2; $c{$k} = $v if defined $v; }
  return %c;
}

# ---- global options, as iproute2 parses them -------------------------------------------------
my %opt = (json => 0, details => 0, stats => 0, force => 0, oneline => 0);
my @global;
my ($batch, $netns_name);
while (@ARGV && $ARGV[0] =~ /^-/) {
  my $o = shift @ARGV;
  push @global, $o;
  (my $name = $o) =~ s/^--?//;
  if ($name =~ /^(j|json)$/) { $opt{json} = 1 }
  elsif ($name =~ /^(d|details)$/) { $opt{details} = 1 }
  elsif ($name =~ /^(s|stats|statistics)$/) { $opt{stats} = 1 }
  elsif ($name eq 'force') { $opt{force} = 1 }
  elsif ($name =~ /^(o|oneline)$/) { $opt{oneline} = 1 }
  elsif ($name =~ /^(n|netns)$/) { $netns_name = shift @ARGV; push @global, $netns_name }
  elsif ($name =~ /^(b|batch)$/) { $batch = shift @ARGV; pop @global }
  elsif ($name =~ /^(f|family|rc|rcvbuf)$/) { push @global, shift @ARGV }
}

my $in_host = in_host_netns();
my $changed_links = 0;   # something that may rename or move a VF netdev ran
my $status = defined $batch ? run_batch($batch) : run_one([@ARGV], undef);
resync_sysfs() if $changed_links;
exit $status;

sub in_host_netns {
  my @host = stat($conf{hostns});
  my @here = defined $netns_name ? stat("/run/netns/$netns_name") : stat('/proc/self/ns/net');
  return @host && @here && $host[0] == $here[0] && $host[1] == $here[1];
}

# ---- dispatch --------------------------------------------------------------------------------
sub is_link_object { return $_[0] =~ /^l(i(nk?)?)?$/ }

sub kind_of {
  my ($argv) = @_;
  my @a = @$argv;
  return 'pass' unless @a;
  my $obj = $a[0];
  if (is_link_object($obj)) {
    my $cmd = $a[1] // 'show';
    if ($cmd =~ /^(s|sh|sho|show|l|li|lis|list|ls|lst)$/) { return 'show' }
    if ($cmd eq 'set' || $cmd eq 'change') {
      my $dev = device_of([@a[2 .. $#a]]);
      return 'vf' if defined $dev && $PF{$dev} && grep { $_ eq 'vf' } @a;
    }
    $changed_links = 1 if $cmd =~ /^(set|change|add|del|delete|property|prop)$/ && ($in_host || grep { $_ eq 'netns' } @a);
    return 'pass';
  }
  if ($obj =~ /^a(d(d(r(e(s(s)?)?)?)?)?)?$/ && (($a[1] // 'show') =~ /^(s|sh|sho|show|l|li|lis|list|ls|lst)$/)) { return 'show' }
  return 'pass';
}

# Whether the output of a show command needs what the kernel would add: a rig PF's VF table (in the
# host, for the PF or all links), or with -d the parent device of a VF netdev (anywhere).
sub rewrites_show {
  my ($argv) = @_;
  return 1 if $opt{details};
  return 0 unless $in_host;
  my $dev = device_of([@$argv[2 .. $#$argv]]);
  return !defined $dev || $PF{$dev};
}

sub device_of {
  my ($rest) = @_;
  my @r = @$rest;
  for (my $i = 0; $i < @r; $i++) { return $r[$i + 1] if $r[$i] eq 'dev' }
  return $r[0] if @r && $r[0] !~ /^(up|down|name|mtu|address|netns|vf|master|nomaster)$/;
  return undef;
}

# One command line (argv) outside batch mode, or line $lineno of a batch.
sub run_one {
  my ($argv, $lineno) = @_;
  my $kind = kind_of($argv);
  return vf_set($argv, $lineno) if $kind eq 'vf';
  return show($argv, $lineno) if $kind eq 'show' && rewrites_show($argv);
  return 0 if defined $lineno;   # batch pass-through lines are run in chunks by run_batch
  # Nothing to do afterwards: become the real ip. Otherwise run it, then bring sysfs up to date.
  if (!$changed_links) { exec { $REAL } $REAL, @global, @$argv or die "ip shim: cannot run $REAL: $!\n" }
  system { $REAL } $REAL, @global, @$argv;
  return $? == -1 ? 127 : $? >> 8;
}

sub split_line {
  my ($line) = @_;
  $line =~ s/#.*$//;
  return grep { length } split /\s+/, $line;
}

sub run_batch {
  my ($file) = @_;
  my $fh;
  if ($file eq '-') { $fh = \*STDIN } else { open($fh, '<', $file) or do { print STDERR "Cannot open file \"$file\" for reading: $!\n"; return 1 } }
  my @lines = <$fh>;
  my $failed = 0;
  my @chunk;      # [lineno, text] of pass-through lines not yet run
  my $flush = sub {
    return 0 unless @chunk;
    my $rc = real_chunk(\@chunk);
    @chunk = ();
    return $rc;
  };
  for my $i (0 .. $#lines) {
    my @argv = split_line($lines[$i]);
    next unless @argv;
    my $kind = kind_of(\@argv);
    if ($kind eq 'pass' || ($kind eq 'show' && !rewrites_show(\@argv))) { push @chunk, [$i + 1, $lines[$i]]; next }
    my $rc = $flush->();
    return $rc if $rc == 255 || ($rc && !$opt{force});
    $failed ||= $rc;
    $rc = run_one(\@argv, $i + 1);
    return $rc if $rc == 255 || ($rc && !$opt{force});
    $failed ||= $rc;
  }
  my $rc = $flush->();
  return $rc if $rc == 255;
  return ($failed || $rc) ? 1 : 0;
}

# Runs pass-through batch lines with the real ip (its stdout is ours), renumbering its "Command failed -:N".
sub real_chunk {
  my ($chunk) = @_;
  my $input = join '', map { $_->[1] =~ /\n$/ ? $_->[1] : "$_->[1]\n" } @$chunk;
  pipe(my $in_r, my $in_w) or die; pipe(my $err_r, my $err_w) or die;
  my $pid = fork() // die "ip shim: fork: $!\n";
  if ($pid == 0) {
    close $in_w; close $err_r;
    open(STDIN, '<&', $in_r) or exit 127; open(STDERR, '>&', $err_w) or exit 127;
    exec { $REAL } $REAL, @global, '-batch', '-' or exit 127;
  }
  close $in_r; close $err_w;
  print $in_w $input; close $in_w;
  my $err = do { local $/; <$err_r> } // '';
  waitpid($pid, 0);
  $err =~ s/Command failed -:(\d+)/"Command failed -:" . $chunk->[$1 - 1][0]/ge;
  print STDERR $err;
  return $? >> 8;
}

# The stdout of a command (its stderr goes to ours), and its exit status.
sub output_of {
  my (@argv) = @_;
  open(my $fh, '-|', @argv) or die "ip shim: cannot run $argv[0]: $!\n";
  my $out = do { local $/; <$fh> } // '';
  close $fh;
  return ($out, $? >> 8);
}

# ---- the VF table ------------------------------------------------------------------------------
# One line per VF: index mac vlan qos proto spoofchk trust state min_tx max_tx query_rss
sub table_path { return "$rig/shim/vf/$_[0]" }

sub with_table {
  my ($pf, $exclusive, $body) = @_;
  open(my $lock, '>>', table_path($pf) . '.lock') or die "ip shim: lock: $!\n";
  flock($lock, $exclusive ? 2 : 1) or die "ip shim: flock: $!\n";
  my @rows;
  open(my $fh, '<', table_path($pf)) or die "ip shim: cannot read the VF table of $pf: $!\n";
  while (<$fh>) { chomp; next unless length; my @f = split / /; push @rows, { index => $f[0], mac => $f[1], vlan => $f[2], qos => $f[3], proto => $f[4], spoofchk => $f[5], trust => $f[6], state => $f[7], min => $f[8], max => $f[9], rss => $f[10] } }
  close $fh;
  my $result = $body->(\@rows);
  if ($exclusive) {
    my $tmp = table_path($pf) . ".tmp$$";
    open(my $out, '>', $tmp) or die;
    print $out join(' ', @$_{qw(index mac vlan qos proto spoofchk trust state min max rss)}), "\n" for @rows;
    close $out;
    rename $tmp, table_path($pf) or die;
  }
  close $lock;
  return $result;
}

sub invarg {
  my ($msg, $arg) = @_;
  print STDERR "Error: argument \"$arg\" is wrong: $msg\n";
  exit 255;
}

sub is_uint { return defined $_[0] && $_[0] =~ /^(0x[0-9a-fA-F]+|0[0-7]*|[1-9]\d*)$/ }
sub uint_of { my $v = shift; return $v =~ /^0x/i ? hex($v) : $v =~ /^0/ ? oct($v) : $v + 0 }

# parse_on_off: exactly "on" or "off".
sub on_off {
  my ($value) = @_;
  return $value eq 'on' ? 1 : $value eq 'off' ? 0 : undef;
}

# `link set dev PF vf N SETTINGS`: parsed as iplink_parse_vf does, applied in the kernel's order.
sub vf_set {
  my ($argv, $lineno) = @_;
  my @a = @$argv;
  my $pf = device_of([@a[2 .. $#a]]);
  my $fail = sub {
    my ($msg, $rc) = @_;
    print STDERR $msg;
    print STDERR "Command failed -:$lineno\n" if defined $lineno;
    return defined $lineno ? 1 : $rc;
  };
  return $fail->("Cannot find device \"$pf\"\n", 1) unless $in_host;
  my ($i) = grep { $a[$_] eq 'vf' } 0 .. $#a;
  my @rest = @a[$i + 1 .. $#a];
  my @before = grep { $_ ne 'set' && $_ ne 'change' && $_ ne 'dev' && $_ ne $pf && !is_link_object($_) } @a[0 .. $i - 1];
  invarg('the sriov rig simulates only "vf" settings of a PF, not other link attributes', $before[0]) if @before;
  my $vf = shift @rest;
  print(STDERR "Command line is not complete. Try option \"help\"\n"), exit 255 unless defined $vf;
  invarg("Invalid \"vf\" value\n", $vf) unless $vf =~ /^\d+$/;
  my %set;
  while (@rest) {
    my $key = shift @rest;
    my $val = sub { my $v = shift @rest; print(STDERR "Command line is not complete. Try option \"help\"\n"), exit 255 unless defined $v; return $v };
    if ('mac' =~ /^\Q$key\E/) {
      my $m = $val->();
      my @octets = split /:/, $m;
      return $fail->("\"$m\" is invalid lladdr.\n", 1) if !@octets || grep { !/^[0-9a-fA-F]{1,2}$/ } @octets;
      return $fail->("Invalid address length " . scalar(@octets) . " - must be 6 bytes\n", 1) if @octets != 6;
      $set{mac} = join ':', map { sprintf '%02x', hex } @octets;
    } elsif ('vlan' =~ /^\Q$key\E/) {
      my $v = $val->();
      invarg("Invalid \"vlan\" value\n", $v) unless is_uint($v) && uint_of($v) <= 4095;
      $set{vlan} = uint_of($v); $set{qos} = 0; $set{proto} = '802.1Q';
      if (@rest && 'qos' =~ /^\Q$rest[0]\E/) { shift @rest; my $q = $val->(); invarg("Invalid \"qos\" value\n", $q) unless is_uint($q); $set{qos} = uint_of($q) }
      if (@rest && 'proto' =~ /^\Q$rest[0]\E/) {
        shift @rest; my $p = $val->();
        my %known = ('802.1q' => '802.1Q', '802.1ad' => '802.1ad', '0x8100' => '802.1Q', '0x88a8' => '802.1ad', 'ipv4' => 'ip', 'ip' => 'ip', 'ipv6' => 'ipv6');
        my $proto = $known{lc $p};
        invarg("protocol is invalid\n", $p) unless defined $proto;
        invarg("Invalid \"vlan protocol\" value - supported 802.1Q, 802.1ad\n", $p) unless $proto eq '802.1Q' || $proto eq '802.1ad';
        $set{proto} = $proto;
      }
    } elsif ('rate' =~ /^\Q$key\E/) {
      my $v = $val->(); invarg("Invalid \"rate\" value\n", $v) unless is_uint($v); $set{legacy_rate} = uint_of($v);
    } elsif ('max_tx_rate' =~ /^\Q$key\E/) {
      my $v = $val->(); invarg("Invalid \"max tx rate\" value\n", $v) unless is_uint($v); $set{max} = uint_of($v);
    } elsif ('min_tx_rate' =~ /^\Q$key\E/) {
      my $v = $val->(); invarg("Invalid \"min tx rate\" value\n", $v) unless is_uint($v); $set{min} = uint_of($v);
    } elsif ('spoofchk' =~ /^\Q$key\E/) {
      my $v = $val->(); my $b = on_off($v);
      return $fail->("Error: argument of \"spoofchk\" must be one of \"off\", \"on\", not \"$v\"\n", 1) unless defined $b;
      $set{spoofchk} = $b;
    } elsif ('query_rss' =~ /^\Q$key\E/) {
      my $v = $val->(); my $b = on_off($v);
      return $fail->("Error: argument of \"query_rss\" must be one of \"off\", \"on\", not \"$v\"\n", 1) unless defined $b;
      $set{rss} = $b;
    } elsif ('trust' =~ /^\Q$key\E/) {
      my $v = $val->(); my $b = on_off($v);
      return $fail->("Error: argument of \"trust\" must be one of \"off\", \"on\", not \"$v\"\n", 1) unless defined $b;
      $set{trust} = $b;
    } elsif ('state' =~ /^\Q$key\E/) {
      my $v = $val->();
      my ($s) = grep { length $v && $_ =~ /^\Q$v\E/ } qw(auto enable disable);
      invarg("Invalid \"state\" value\n", $v) unless defined $s;
      $set{state} = $s;
    } elsif ($key eq 'node_guid' || $key eq 'port_guid') {
      $val->();
      return $fail->("RTNETLINK answers: Operation not supported\n", 2);
    } else {
      invarg('the sriov rig simulates only "vf" settings of a PF, not other link attributes', $key);
    }
  }
  print(STDERR "Command line is not complete. Try option \"help\"\n"), exit 255 unless %set;
  return with_table($pf, 1, sub {
    my ($rows) = @_;
    my ($row) = grep { $_->{index} == $vf } @$rows;
    return $fail->("RTNETLINK answers: Invalid argument\n", 2) unless $row;
    if ((exists $set{min} || exists $set{max})) {
      my $min = exists $set{min} ? $set{min} : $row->{min};
      my $max = exists $set{max} ? $set{max} : $row->{max};
      return $fail->("Invalid min_tx_rate $min - must be <= max_tx_rate $max\n", 1) if $max && $min > $max;
      ($set{min}, $set{max}) = ($min, $max);
    }
    # The kernel applies a request's VF attributes in this order and stops at the first refusal.
    if (exists $set{mac}) {
      return $fail->("RTNETLINK answers: Invalid argument\n", 2) if hex(substr($set{mac}, 0, 2)) & 1;
      $row->{mac} = $set{mac};
    }
    if (exists $set{vlan}) {
      return $fail->("RTNETLINK answers: Invalid argument\n", 2) if $set{vlan} > 4095 || $set{qos} > 7;
      return $fail->("RTNETLINK answers: Invalid argument\n", 2) if $set{vlan} == 0 && $set{qos} != 0;
      @$row{qw(vlan qos proto)} = ($set{vlan}, $set{qos}, $set{vlan} ? $set{proto} : '802.1Q');
    }
    $row->{max} = $set{legacy_rate} if exists $set{legacy_rate};
    @$row{qw(min max)} = @set{qw(min max)} if exists $set{min};
    $row->{spoofchk} = $set{spoofchk} if exists $set{spoofchk};
    $row->{state} = $set{state} if exists $set{state};
    $row->{rss} = $set{rss} if exists $set{rss};
    $row->{trust} = $set{trust} if exists $set{trust};
    return 0;
  });
}

# ---- show: the real output with the VF table where iproute2 prints it -------------------------------
sub show {
  my ($argv, $lineno) = @_;
  my ($out, $rc) = output_of($REAL, @global, @$argv);
  if ($rc) {
    print STDERR "Command failed -:$lineno\n" if defined $lineno;
    return defined $lineno ? 1 : $rc;
  }
  my $do_link = is_link_object($argv->[0]);
  $out = $opt{json} ? parent_json($out) : parent_text($out) if $opt{details};
  if ($in_host && ($do_link || $opt{details})) {
    $out = $opt{json} ? inject_json($out) : inject_text($out);
  }
  print STDOUT $out;
  return 0;
}

sub vf_rows { my ($pf) = @_; return with_table($pf, 0, sub { return [@{$_[0]}] }) }

sub vf_json {
  my ($r, $brd) = @_;
  my @vlan = ();
  push @vlan, "\"vlan\":$r->{vlan}" if $r->{vlan};
  push @vlan, "\"qos\":$r->{qos}" if $r->{qos};
  push @vlan, "\"protocol\":\"$r->{proto}\"" if $r->{proto} ne '802.1Q';
  my $s = "{\"vf\":$r->{index},\"link_type\":\"ether\",\"address\":\"$r->{mac}\",\"broadcast\":\"$brd\",\"vlan_list\":[{" . join(',', @vlan) . "}]";
  $s .= ",\"tx_rate\":$r->{max}" if $r->{max};
  $s .= ",\"rate\":{\"max_tx\":$r->{max},\"min_tx\":$r->{min}}";
  $s .= ',"spoofchk":' . ($r->{spoofchk} ? 'true' : 'false');
  $s .= ",\"link_state\":\"$r->{state}\"";
  $s .= ',"trust":' . ($r->{trust} ? 'true' : 'false');
  $s .= ',"query_rss_en":' . ($r->{rss} ? 'true' : 'false');
  return "$s}";
}

sub vf_text {
  my ($r, $brd) = @_;
  my $s = "    vf $r->{index}     link/ether $r->{mac} brd $brd";
  $s .= ", vlan $r->{vlan}" if $r->{vlan};
  $s .= ", qos $r->{qos}" if $r->{qos};
  $s .= ", vlan protocol $r->{proto}" if $r->{proto} ne '802.1Q';
  $s .= ", tx rate $r->{max} (Mbps)" if $r->{max};
  $s .= ", max_tx_rate $r->{max}Mbps" if $r->{max};
  $s .= ", min_tx_rate $r->{min}Mbps" if $r->{min};
  $s .= ', spoof checking ' . ($r->{spoofchk} ? 'on' : 'off');
  $s .= ", link-state $r->{state}";
  $s .= ', trust ' . ($r->{trust} ? 'on' : 'off');
  $s .= ', query_rss ' . ($r->{rss} ? 'on' : 'off');
  return "$s\n";
}

# The top-level objects of a JSON array as [start, end) offsets, by brace depth outside strings.
sub objects {
  my ($text) = @_;
  my (@spans, $depth, $start, $in_str, $esc);
  $depth = 0;
  for (my $i = 0; $i < length $text; $i++) {
    my $c = substr($text, $i, 1);
    if ($in_str) { if ($esc) { $esc = 0 } elsif ($c eq '\\') { $esc = 1 } elsif ($c eq '"') { $in_str = 0 } next }
    if ($c eq '"') { $in_str = 1 }
    elsif ($c eq '{' || $c eq '[') { $start = $i if $depth == 1 && $c eq '{'; $depth++ }
    elsif ($c eq '}' || $c eq ']') { $depth--; push @spans, [$start, $i + 1] if $depth == 1 && $c eq '}' }
  }
  return @spans;
}

# Where vfinfo_list goes in one link object: at the comma before "altnames" or "addr_info", else
# before the closing brace.
sub vf_insert_at {
  my ($obj) = @_;
  my ($depth, $in_str, $esc) = (0, 0, 0);
  for (my $i = 0; $i < length $obj; $i++) {
    my $c = substr($obj, $i, 1);
    if ($in_str) { if ($esc) { $esc = 0 } elsif ($c eq '\\') { $esc = 1 } elsif ($c eq '"') { $in_str = 0 } next }
    if ($c eq '"') {
      return $i - 1 if $depth == 1 && substr($obj, $i) =~ /^"(altnames|addr_info)":/;
      $in_str = 1;
    } elsif ($c eq '{' || $c eq '[') { $depth++ } elsif ($c eq '}' || $c eq ']') { $depth-- }
  }
  return length($obj) - 1;
}

# A VF netdev is a PCI device's: with -d the kernel reports "parentbus":"pci","parentdev":"<pci>" after
# the GSO/GRO limits (before ifalias, stats, VF table, altnames and addresses).
sub parent_json {
  my ($out) = @_;
  for my $span (reverse objects($out)) {
    my $obj = substr($out, $span->[0], $span->[1] - $span->[0]);
    my ($pci) = $obj =~ /"ifalias":"underlay-rig-vf ([^"]+)"/;
    next unless defined $pci;
    my $at = index($obj, ',"ifalias":');
    substr($obj, $at, 0) = ",\"parentbus\":\"pci\",\"parentdev\":\"$pci\"";
    substr($out, $span->[0], $span->[1] - $span->[0]) = $obj;
  }
  return $out;
}

sub parent_text {
  my ($out) = @_;
  my @blocks = split /(?=^\d+: )/m, $out;
  for my $block (@blocks) {
    my ($pci) = $block =~ /^\s+alias underlay-rig-vf (\S+)/m;
    $block =~ s/^(\s+.*gro_max_size \d+ )/$1parentbus pci parentdev $pci /m if defined $pci;
  }
  return join '', @blocks;
}

sub inject_json {
  my ($out) = @_;
  for my $span (reverse objects($out)) {
    my $obj = substr($out, $span->[0], $span->[1] - $span->[0]);
    my ($name) = $obj =~ /^\{[^{}]*?"ifname":"([^"]+)"/;
    next unless defined $name && $PF{$name};
    my ($brd) = $obj =~ /"broadcast":"([^"]+)"/;
    my $list = '"vfinfo_list":[' . join(',', map { vf_json($_, $brd // 'ff:ff:ff:ff:ff:ff') } @{vf_rows($name)}) . ']';
    substr($obj, vf_insert_at($obj), 0) = ",$list";
    substr($out, $span->[0], $span->[1] - $span->[0]) = $obj;
  }
  return $out;
}

sub inject_text {
  my ($out) = @_;
  my @lines = split /^/m, $out;
  my (@result, $pf, $brd);
  my $flush = sub { if (defined $pf) { push @result, map { vf_text($_, $brd // 'ff:ff:ff:ff:ff:ff') } @{vf_rows($pf)}; $pf = undef } };
  for my $line (@lines) {
    if ($line =~ /^\d+: ([^:@\s]+)[:@]/) { $flush->(); $pf = $PF{$1} ? $1 : undef; $brd = undef }
    elsif (defined $pf && $line =~ /^\s+(altname |inet6? )/) { $flush->() }
    ($brd) = $line =~ / brd (\S+)/ if defined $pf && $line =~ m{^\s+link/ether};
    push @result, $line;
  }
  $flush->();
  return join '', @result;
}

# ---- sysfs: <vf>/net/ follows the VF netdev --------------------------------------------------------
# The host's sysfs (mounted in the host netns, it lists the host's links from wherever it is read)
# tells where each VF netdev is: the link whose ifalias names the VF's PCI address.
sub resync_sysfs {
  open(my $lock, '>>', "$rig/shim/sysfs.lock") or die "ip shim: lock: $!\n";
  flock($lock, 2) or die;
  my %name_of;
  opendir(my $net, '/sys/class/net') or die "ip shim: /sys/class/net: $!\n";
  for my $name (readdir $net) {
    next if $name =~ /^\./;
    open(my $fh, '<', "/sys/class/net/$name/ifalias") or next;
    my $alias = <$fh> // '';
    close $fh;
    $name_of{$1} = $name if $alias =~ /^underlay-rig-vf (\S+)/;
  }
  closedir $net;
  for my $pci (@ALL_VFS) {
    my $dev = "$SYSFS/bus/pci/devices/$pci";
    my $driver = readlink("$dev/driver") // '';
    my $want = $driver =~ m{/(vfio-pci|uio_pci_generic|igb_uio)$} ? undef : $name_of{$pci};
    opendir(my $dh, "$dev/net") or next;
    my @have = grep { !/^\./ } readdir $dh;
    closedir $dh;
    for my $n (@have) { rmdir "$dev/net/$n" unless defined $want && $n eq $want }
    mkdir "$dev/net/$want" if defined $want && !-d "$dev/net/$want";
  }
  close $lock;
}
