/** The names the executable answers to as a CNI plugin; build.mjs makes a link for each. */
export const PLUGIN_NAMES: ReadonlyArray<string> = ['macvlan', 'underlay-macvlan', 'sriov', 'underlay-sriov', 'whereabouts', 'underlay-ipam'];
export const IPAM_TYPES: ReadonlyArray<string> = ['whereabouts', 'underlay-ipam'];
