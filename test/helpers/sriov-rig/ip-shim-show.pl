# Part of the rig's ip shim (ip-shim.pl), compiled only for a show whose output it completes.
use strict;
our ($rig, %conf, $REAL, $SYSFS, %PF, %VF_OF_PF, @ALL_VFS, %opt, @global, $in_host, $changed_links, $LIB);
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
  need('vf');
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
  need('vf');
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

1;
