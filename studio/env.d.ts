/** Vite's asset imports, as the studio's sources use them. */
declare module '*?url' {
  const url: string;
  export default url;
}
declare module '*?raw' {
  const text: string;
  export default text;
}
