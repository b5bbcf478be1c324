// Files imported `with { type: "file" }` resolve to a path (inside the compiled binary: /$bunfs/...).
declare module "*.so" {
  const path: string;
  export default path;
}
