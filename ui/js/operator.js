import { boot } from "./shell.js";
boot();
