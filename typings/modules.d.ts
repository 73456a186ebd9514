declare module 'humanize-ms' {
  /** egg-schedule's parser for `interval`: a number of ms, or a string like '5s' or '1m'. */
  function ms(value: string | number): number;
  export = ms;
}
