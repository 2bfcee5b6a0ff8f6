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
#  - with -d, prints a VF netdev's parent device ("parentbus":"pci","parentdev":"<pci>") as the kernel
#    reports it for a PCI netdev, wherever it is (ip-shim-show.pl);
#  - keeps the rig's sysfs honest after anything that may rename a VF netdev or move it between
#    namespaces: <vf>/net/ lists the netdev's current name while it is in the host netns and nothing
#    while it is elsewhere, as sysfs does (the VF netdevs, veth ends, carry the alias
#    "underlay-rig-vf <pci>" so they can be found whatever their name);
#  - hands everything else to the real ip, unchanged.
# Perl (always on Debian) rather than Node: this runs several times per ADD, and a Node start-up
# (~40 ms) would swamp what the benchmark measures. The VF table (ip-shim-vf.pl) and the output
# rewriting (ip-shim-show.pl) are compiled only by the calls that need them.
use strict;

# The rarely needed parts are compiled only when needed: compiling all of it is most of this shim's cost.
(our $LIB = readlink($0) // $0) =~ s{/[^/]+$}{};
sub need { require "$LIB/ip-shim-$_[0].pl" }

our $rig = $0;
$rig =~ s{/[^/]+/[^/]+$}{};
our %conf = read_conf("$rig/shim/config");
our $REAL = $conf{realip};
our $SYSFS = $conf{sysfs};
our %PF = map { $_ => 1 } split /,/, ($conf{pfs} // '');
our %VF_OF_PF = map { $_ => [split /,/, $conf{"vfs.$_"}] } keys %PF;   # PF name => VF PCI addresses by index
our @ALL_VFS = map { @{$VF_OF_PF{$_}} } sort keys %PF;

sub read_conf {
  my ($path) = @_;
  open(my $fh, '<', $path) or die "ip shim: cannot read $path: $!\n";
  my %c;
  while (<$fh>) { chomp; my ($k, $v) = split / /, $_, 2; $c{$k} = $v if defined $v; }
  return %c;
}

# ---- global options, as iproute2 parses them -------------------------------------------------
our %opt = (json => 0, details => 0, stats => 0, force => 0, oneline => 0);
our @global;
our ($batch, $netns_name);
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

our $in_host = in_host_netns();
our $changed_links = 0;   # something that may rename or move a VF netdev ran
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
    # What changes a netdev's name or namespace changes what sysfs lists: a rename or a move, a new or
    # deleted link. Only the host's view matters, so in another netns only a move can.
    my $moves = grep { $_ eq 'netns' } @a;
    my $renames = grep { $_ eq 'name' } @a;
    $changed_links = 1 if $moves || ($in_host && ($cmd =~ /^(add|del|delete)$/ || ($cmd =~ /^(set|change)$/ && $renames)));
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
  if ($kind eq 'vf') { need('vf'); return vf_set($argv, $lineno) }
  if ($kind eq 'show' && rewrites_show($argv)) { need('show'); return show($argv, $lineno) }
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
