# Part of the rig's ip shim (ip-shim.pl), compiled only when a command touches a PF's VF table.
use strict;
our ($rig, %conf, $REAL, $SYSFS, %PF, %VF_OF_PF, @ALL_VFS, %opt, @global, $in_host, $changed_links, $LIB);

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

1;
