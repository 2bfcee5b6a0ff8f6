#!/usr/bin/perl
# The `rdma` of the SR-IOV test rig (see rig.ts). The test machines have no RDMA devices; this stands
# in for the RDMA subsystem's network namespace handling as iproute2 6.1's rdma tool shows it:
#  - `rdma system show` prints "netns shared|exclusive copy-on-fork on"; `rdma system set netns MODE`
#    switches (the kernel also refuses to switch while non-init namespaces exist: not simulated);
#  - `rdma [-j] dev [show [DEV]]` lists the devices the caller's netns sees: all of them in shared
#    mode, only its own in exclusive mode ("Wrong device name" for another's);
#  - `rdma dev set DEV netns NAME` takes only a name under /run/netns, as 6.1 does; in shared mode the
#    kernel refuses ("Operation not supported"); in exclusive mode the device moves, and sysfs follows:
#    <vf>/infiniband/DEV is listed only while the device is in the host netns.
# A netns that dies returns its RDMA devices to the host: rig.ts does that where it simulates it.
# State: <rig>/rdma/mode, and <rig>/rdma/devices with one "name pci netns-inode index" line per device.
use strict;
use warnings;

my $rig = $0;
$rig =~ s{/[^/]+/[^/]+$}{};
my %conf;
open(my $cf, '<', "$rig/shim/config") or die "rdma shim: no config: $!\n";
while (<$cf>) { chomp; my ($k, $v) = split / /, $_, 2; $conf{$k} = $v if defined $v }
close $cf;
my $SYSFS = $conf{sysfs};
my $HOST = (stat $conf{hostns})[1];

my ($json, $details) = (0, 0);
while (@ARGV && $ARGV[0] =~ /^-/) {
  my $o = shift @ARGV;
  $json = 1 if $o =~ /^-(j|json)$/;
  $details = 1 if $o =~ /^-(d|details)$/;
}

open(my $lock, '>>', "$rig/rdma/lock") or die;
flock($lock, 2) or die;
my $mode = slurp("$rig/rdma/mode");
chomp $mode;
my @devs = map { my @f = split / /; { name => $f[0], pci => $f[1], ns => $f[2], index => $f[3] } } grep { length } split /\n/, slurp("$rig/rdma/devices");
my $here = (stat '/proc/self/ns/net')[1];

my ($obj, $cmd, @rest) = @ARGV;
$obj //= 'dev';
if ($obj =~ /^sys/) {
  $cmd //= 'show';
  if ($cmd eq 'show') {
    print $json ? "[{\"netns\":\"$mode\",\"copy-on-fork\":true}]\n" : "netns $mode copy-on-fork on\n";
    exit 0;
  }
  if ($cmd eq 'set' && ($rest[0] // '') eq 'netns' && ($rest[1] // '') =~ /^(shared|exclusive)$/) {
    write_file("$rig/rdma/mode", "$rest[1]\n");
    exit 0;
  }
  print STDERR "valid options are: { shared | exclusive }\n";
  exit 1;
}
if ($obj =~ /^dev/) {
  $cmd //= 'show';
  my @visible = grep { $mode eq 'shared' || $_->{ns} == $here } @devs;
  if ($cmd =~ /^(show|list)$/) {
    if (@rest) { @visible = grep { $_->{name} eq $rest[0] } @visible; wrong() unless @visible }
    if ($json) { print '[', join(',', map { dev_json($_) } @visible), "]\n" } else { print dev_text($_) for @visible }
    exit 0;
  }
  if ($cmd eq 'set') {
    my ($name, $what, $target) = @rest;
    my ($dev) = grep { defined $name && $_->{name} eq $name } @visible;
    wrong() unless $dev;
    unless (($what // '') eq 'netns' && defined $target) { print STDERR "Usage: rdma dev set [DEV] netns NSNAME\n"; exit 1 }
    my @st = stat "/run/netns/$target";
    unless (@st) { print STDERR "Cannot open network namespace \"$target\": No such file or directory\n"; exit 1 }
    if ($mode ne 'exclusive') { print STDERR "error: Operation not supported\n"; exit 1 }
    $dev->{ns} = $st[1];
    write_file("$rig/rdma/devices", join('', map { "$_->{name} $_->{pci} $_->{ns} $_->{index}\n" } @devs));
    my $listed = "$SYSFS/bus/pci/devices/$dev->{pci}/infiniband/$dev->{name}";
    my $hidden = "$rig/rdma/hidden/$dev->{name}";
    if ($st[1] == $HOST) { mkdir $listed; rmdir $hidden } else { rmdir $listed; mkdir $hidden }
    exit 0;
  }
}
print STDERR "rdma shim: the sriov rig does not simulate \"rdma @ARGV\"\n";
exit 1;

sub wrong { print STDERR "Wrong device name\n"; exit 1 }

sub guid { my ($d) = @_; return sprintf('0c42:a103:00ee:%04x', $d->{index}) }

sub dev_json {
  my ($d) = @_;
  return "{\"ifindex\":$d->{index},\"ifname\":\"$d->{name}\",\"node_type\":\"ca\",\"fw\":\"22.36.1010\",\"node_guid\":\"" . guid($d) . "\",\"sys_image_guid\":\"" . guid($d) . '"}';
}

sub dev_text {
  my ($d) = @_;
  return "$d->{index}: $d->{name}: node_type ca fw 22.36.1010 node_guid " . guid($d) . ' sys_image_guid ' . guid($d) . "\n";
}

sub slurp { my ($p) = @_; open(my $fh, '<', $p) or return ''; local $/; my $s = <$fh>; return $s // '' }

sub write_file {
  my ($p, $text) = @_;
  open(my $fh, '>', "$p.tmp$$") or die; print $fh $text; close $fh; rename "$p.tmp$$", $p or die;
}
